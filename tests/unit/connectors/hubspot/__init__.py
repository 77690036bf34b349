"""Unit tests of the HubSpot connector."""
