"""Evaluation of identity matching against a labelled set of company-name pairs."""
