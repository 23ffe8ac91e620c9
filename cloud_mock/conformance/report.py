"""The rules the kit checks, each with its section of docs/design.md, and the report:
a pass/fail table for people, JSON for programs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum


class Outcome(Enum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Rule:
    id: str
    section: str  # of docs/design.md
    text: str


RULES = (
    # Provisioning (§2)
    Rule("keys.published", "§2", "GET /v1/keys lists the Ed25519 token-signing keys"),
    Rule("prov.date-header", "§2", "every poll answer carries a valid Date header"),
    Rule("prov.unknown-no-token", "§2", "a poll of an unknown device answers 204, no body"),
    Rule("prov.malformed-400", "§2", "a malformed poll answers 400 (413 if too large), no 5xx"),
    Rule("prov.token-delivered", "§2", "the right proof gets 200 {sealed_token} that opens with K"),
    Rule("prov.replay-refused", "§2", "a replayed poll (same nonce) gets no token"),
    Rule(
        "prov.clock-window", "§2", "ts within ±300 s of the cloud's Date is accepted, outside not"
    ),
    Rule(
        "prov.indistinguishable",
        "§2",
        "an unknown device and a wrong proof get the same status, body, headers and timing",
    ),
    Rule("prov.long-poll-wakeup", "§2", "a held poll is answered as soon as the device is added"),
    Rule("prov.retry-after", "§2", "429 and 503 carry Retry-After (seconds)"),
    # Tokens (§2, wire formats)
    Rule("token.format", "§2", "token = base64url(payload).base64url(signature), v1 claims"),
    Rule("token.signature", "§2", "the token's Ed25519 signature verifies with a published key"),
    Rule("token.sub", "§2", "the token's sub is the device's ID"),
    Rule("token.kind", "§2", "the token's kind is the device's kind"),
    Rule("token.api", "§2", "the token's api is the cloud's https origin"),
    # Control channel (§2)
    Rule("channel.hello-first", "§2", "the device speaks first; the cloud answers its hello"),
    Rule("channel.heartbeat", "§2", "the cloud answers a heartbeat"),
    Rule("channel.command", "§2", "a command arrives as {id, name, args}; its result gets back"),
    Rule("channel.revoked-4401", "§2", "revoking a token closes its channel with 4401"),
    Rule("channel.bad-token-4401", "§2", "a token the cloud did not sign is refused with 4401"),
    Rule("channel.messages", "§2", "every frame the cloud sends is a message of asyncapi.yaml"),
    # Identity (§2): the proof binds its fields, the channel holds the token's device only
    Rule(
        "proof.binds-every-field",
        "§2",
        "a proof computed over another device_id, ts or nonce gets no token (204)",
    ),
    Rule(
        "channel.hello-identity",
        "§2",
        "a hello whose device_id or kind is not the token's, or without version, gets 4400/4401",
    ),
    Rule(
        "channel.replaced-4409",
        "§2",
        "a second connection of the same token closes the first with 4409",
    ),
    # Claims (§2.6): adding a camera's ID takes it from no one
    Rule(
        "claims.squatter-revokes-nothing",
        "§2.6",
        "another organization's claim of a connected camera, with a made-up password and "
        "its own poll, revokes nothing: the owner's channel holds, the camera is not moved",
    ),
    # NVR activation (§3)
    Rule("nvr.register-code", "§3", "an NVR registers its activation code (201)"),
    Rule("nvr.held-poll-answered", "§3", "activating the code answers the NVR's held poll"),
    Rule("nvr.only-registrant", "§3", "only the NVR that registered the code gets its token"),
    Rule("nvr.token", "§3", "the NVR's token: signed, sub = its ID, kind nvr, api"),
    Rule("nvr.channel", "§3", "the NVR's token opens the control channel"),
    Rule("nvr.registration-token", "§3", "a registration token links an NVR once (reuse: 409)"),
    # Video tunnels (§12): the cloud's end, opened for a viewer
    Rule(
        "tunnel.target-named",
        "§12",
        "a viewer brings tunnel_open {session, target}: session 22-64 of [A-Za-z0-9_-], "
        "target a name of the hello's video",
    ),
    Rule("tunnel.unknown-404", "§12", "an upgrade for a session the cloud never made gets 404"),
    Rule(
        "tunnel.no-token-401",
        "§12",
        "an upgrade without a token (or with a forged one) gets 401; the session still works",
    ),
    Rule(
        "tunnel.other-device-refused",
        "§12",
        "another device's token gets 403 or 404; the session still works",
    ),
    Rule("tunnel.used-once", "§12", "a second upgrade of a session already used gets 404"),
    Rule(
        "tunnel.bytes-relayed",
        "§12",
        "the device's token upgrades; the cloud writes bytes, in binary messages only",
    ),
    # The HTTP contract (§11)
    Rule("http.schema", "§11", "every answer the kit got is allowed by openapi.yaml"),
)
RULES_BY_ID = {rule.id: rule for rule in RULES}


@dataclass
class Result:
    rule: str
    outcome: Outcome
    detail: str = ""
    seconds: float = 0.0

    @property
    def section(self) -> str:
        return RULES_BY_ID[self.rule].section


@dataclass
class Report:
    cloud: str
    results: list[Result] = field(default_factory=list)

    def add(self, result: Result) -> None:
        self.results.append(result)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)

    @property
    def failed(self) -> bool:
        return self.count(Outcome.FAIL) > 0

    def outcome_of(self, rule: str) -> Outcome | None:
        """FAIL if any result of the rule failed, else PASS if one passed, else SKIP."""
        outcomes = {r.outcome for r in self.results if r.rule == rule}
        for outcome in (Outcome.FAIL, Outcome.PASS, Outcome.SKIP):
            if outcome in outcomes:
                return outcome
        return None

    def to_json(self) -> str:
        results = []
        for result in self.results:
            item = asdict(result)
            item["outcome"] = result.outcome.value
            item["section"] = f"docs/design.md {result.section}"
            item["title"] = RULES_BY_ID[result.rule].text
            item["seconds"] = round(result.seconds, 3)
            results.append(item)
        return json.dumps(
            {
                "cloud": self.cloud,
                "passed": self.count(Outcome.PASS),
                "failed": self.count(Outcome.FAIL),
                "skipped": self.count(Outcome.SKIP),
                "results": results,
            },
            indent=2,
        )

    def table(self) -> str:
        rows = [("result", "rule", "section", "detail")]
        for result in self.results:
            detail = result.detail or RULES_BY_ID[result.rule].text
            rows.append(
                (
                    result.outcome.value.upper(),
                    result.rule,
                    f"docs/design.md {result.section}",
                    detail,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = [
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3]
            for row in rows
        ]
        lines.append(
            f"{self.count(Outcome.PASS)} passed, {self.count(Outcome.FAIL)} failed, "
            f"{self.count(Outcome.SKIP)} skipped: {self.cloud}"
        )
        return "\n".join(lines)
