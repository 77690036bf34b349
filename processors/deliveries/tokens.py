"""The OAuth grant store under its former name, for the modules that import it from here.

The store moved to :mod:`processors.oauthgrants`, a neutral module, so that the inbound
readers (which may not import :mod:`processors.deliveries`) renew and save grants through the
same store as the delivery sinks. New code imports it from there.
"""

from processors.oauthgrants import (
    GRANT_PURPOSE,
    GRANT_TTL_SECONDS,
    OAuthTokenStore,
    credentials_fingerprint,
)

__all__ = ["GRANT_PURPOSE", "GRANT_TTL_SECONDS", "OAuthTokenStore", "credentials_fingerprint"]
