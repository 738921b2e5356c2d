"""engine.channels on real parts: what a delivery process loads of Apprise to send e-mail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from engine import notify
from registry import session
from registry.clock import utcnow
from tests import factories
from tests.conftest import Mailbox

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# A fresh process, as a flow run is: what delivering its e-mail imported of Apprise's plugins.
_DELIVER = """
import json, sys
from engine import channels, notify
report = notify.deliver_due()
plugins = sorted({m.split(".")[2] for m in sys.modules if m.startswith("apprise.plugins.") and m.count(".") >= 2})
print(json.dumps({"sent": report.sent, "registry_loaded": bool(channels._REGISTRY), "plugins": plugins}))
"""


def test_e_mail_is_sent_without_loading_every_apprise_plugin(smtp: Mailbox) -> None:
    with session() as db:
        owner = factories.person(db)
        step = factories.step(db, owner, kind="form")
        [row] = notify.enqueue(db, key="plain-mail", recipient_id=owner.id or 0,
                               template="compliance/audit/evidence_request",
                               context={"recipient": {"name": owner.name},
                                        "audit": {"framework": "ISO", "period": "2026-Q4",
                                                  "evidence_due_at": utcnow() + timedelta(days=5)},
                                        "controls": [{"ref": "C-1", "title": "Control 1", "step_id": step.id}]})
    done = subprocess.run([sys.executable, "-c", _DELIVER], cwd=PROJECT_ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    child = json.loads(done.stdout.strip().splitlines()[-1])
    assert child["sent"] == [row.id]
    [mail] = smtp.wait_for(1)
    assert mail.subject == row.subject
    # Apprise imports its hundred-odd plugins to find any URL's (0.5-1.5 s of a drill's first alert); the e-mail
    # plugin is all this needs.
    assert not child["registry_loaded"] and set(child["plugins"]) <= {"base", "email"}, child["plugins"]
