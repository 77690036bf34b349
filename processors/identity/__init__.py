"""Identity: which partner CRM object is this Queast company or person?

- :mod:`processors.identity.strategies`: the match strategies, what Queast and a partner
  know about an entity, and the normalised keys each exact strategy compares (with the
  normalisers of :mod:`connectors.base.matchkeys`, shared with the connectors);
- :mod:`processors.identity.names`: company-name normalisation and similarity;
- :mod:`processors.identity.matching`: the decision (auto-linked, ambiguous or no match,
  with its explanation);
- :mod:`processors.identity.resolver` and :mod:`~processors.identity.repository`: links
  stored per connection;
- :mod:`processors.identity.review`: the review decisions (confirm, relink, unlink) that
  the match review API (:mod:`processors.tenants.matches`) calls.
"""
