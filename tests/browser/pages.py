"""What every browser test does on a page: sign in, screenshot, axe-core, the secrets check."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

from playwright.sync_api import Page

from tests.browser.seed import SECRETS

AXE: Final = Path(__file__).parent / "support" / "axe.min.js"
_BLOCKING: Final = frozenset({"serious", "critical"})


def sign_in(page: Page, base_url: str, bearer: str) -> None:
    """Sign in through the form, as a person would (keyboard: fill, then Enter on the button)."""
    page.goto(f"{base_url}/console/login")
    page.get_by_label("Bearer token").fill(bearer)
    page.locator('[data-action="sign-in"]').press("Enter")
    page.wait_for_url(f"{base_url}/console/")


def check_page(page: Page, report_dir: Path, name: str) -> str:
    """Screenshot the page, run axe-core on it (no serious or critical violation), check that
    no seeded secret is in its HTML; its HTML."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    page.screenshot(path=str(report_dir / f"{safe}.png"), full_page=True)
    page.add_script_tag(path=str(AXE))
    results: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    blocking = [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in results["violations"]
        if v.get("impact") in _BLOCKING
    ]
    assert not blocking, f"{name}: accessibility violations {blocking}"
    html = page.content()
    shown = [s for s in SECRETS if s in html]
    assert not shown, f"{name}: a secret is rendered"
    return html
