"""Identity matching: which partner CRM object is this Queast company or person?

See :mod:`processors.identity.matching` for the strategies and the decision rule.
"""

from __future__ import annotations

from processors.identity.matching import (
    DEFAULT_AMBIGUITY_MARGIN,
    DEFAULT_AUTO_LINK_THRESHOLD,
    DEFAULT_COMPANY_STRATEGIES,
    DEFAULT_PERSON_STRATEGIES,
    DEFAULT_REVIEW_FLOOR,
    SHARED_DOMAINS,
    CompanyIdentity,
    LinkedInKind,
    MatchDecision,
    MatchOutcome,
    MatchStrategy,
    NameSimilarity,
    PartnerCandidate,
    PersonIdentity,
    StrategyAttempt,
    company_name_similarity,
    explain_company_name_similarity,
    match_company,
    match_person,
    normalize_company_name,
    normalize_domain,
    normalize_email,
    normalize_linkedin_url,
)

__all__ = [
    "DEFAULT_AMBIGUITY_MARGIN",
    "DEFAULT_AUTO_LINK_THRESHOLD",
    "DEFAULT_COMPANY_STRATEGIES",
    "DEFAULT_PERSON_STRATEGIES",
    "DEFAULT_REVIEW_FLOOR",
    "SHARED_DOMAINS",
    "CompanyIdentity",
    "LinkedInKind",
    "MatchDecision",
    "MatchOutcome",
    "MatchStrategy",
    "NameSimilarity",
    "PartnerCandidate",
    "PersonIdentity",
    "StrategyAttempt",
    "company_name_similarity",
    "explain_company_name_similarity",
    "match_company",
    "match_person",
    "normalize_company_name",
    "normalize_domain",
    "normalize_email",
    "normalize_linkedin_url",
]
