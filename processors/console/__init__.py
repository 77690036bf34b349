"""The console: server-rendered pages over the API's own services, at ``/console/``.

People who review matches and look after deliveries use it in a browser instead of curl.
It is part of the API app (:func:`processors.api.create_api` includes :data:`router`), renders
Jinja2 templates (``templates/``, packaged with the project) with plain HTML forms: no script,
no build step. Modules:

- :mod:`processors.console.session`: sign-in with the API's bearer JWT, the session cookie,
  CSRF tokens, and the seam for a later OIDC login;
- :mod:`processors.console.pages`: the routes, how each calls the API's services, and the
  extension points for new pages;
- :mod:`processors.console.operations`: dead letters, replays, preview, inbound reviews and
  the platform admins' allowlist, each calling the JSON API's own endpoint function.

Rules it keeps: the console calls the services the JSON API calls (no rule is implemented
twice), so it can do nothing the caller's role could not do through the API; tenant pages have
the tenant in the path and answer 401/403 as the API does; no route changes state on GET; every
POST carries the session's CSRF token; secrets are shown as the API shows them (never: the
pages render the API's redacted view, and the event-type form sends no secret field).
"""

from processors.console import operations  # its pages register on the router
from processors.console.pages import TENANT_PAGES, router

__all__ = ["TENANT_PAGES", "operations", "router"]
