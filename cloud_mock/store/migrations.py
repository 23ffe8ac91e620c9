"""The schema as a list of migrations: `PRAGMA user_version` says how many have run.

Never edit a migration that has shipped; add the next one. Version 1 is the schema the
store had before it was versioned (every statement `IF NOT EXISTS`, so it also adopts a
database of that time without touching its rows).
"""

from __future__ import annotations

V1_BASELINE = """
CREATE TABLE IF NOT EXISTS orgs (
    name TEXT PRIMARY KEY,
    business INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    login TEXT PRIMARY KEY,
    org TEXT NOT NULL REFERENCES orgs(name),
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    max_sessions INTEGER
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    login TEXT NOT NULL REFERENCES users(login) ON DELETE CASCADE,
    device TEXT NOT NULL,
    software TEXT NOT NULL,
    started REAL NOT NULL,
    last_activity REAL NOT NULL
);
-- Idle sessions are pruned by last_activity on every authenticated request.
CREATE INDEX IF NOT EXISTS sessions_last_activity ON sessions(last_activity);
CREATE INDEX IF NOT EXISTS sessions_login ON sessions(login, started);
CREATE TABLE IF NOT EXISTS cameras (
    camera_id TEXT PRIMARY KEY,
    org TEXT NOT NULL REFERENCES orgs(name),
    device_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    token_jti TEXT NOT NULL UNIQUE,
    hello_at REAL,
    last_seen REAL
);
CREATE TABLE IF NOT EXISTS provisioning (
    device_id TEXT PRIMARY KEY,
    key BLOB NOT NULL,
    token TEXT,
    camera_id TEXT REFERENCES cameras(camera_id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS revoked_jtis (
    jti TEXT PRIMARY KEY,
    revoked_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS nonces (
    nonce TEXT PRIMARY KEY,
    ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS nonces_ts ON nonces(ts);
CREATE TABLE IF NOT EXISTS poll_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    at REAL NOT NULL,
    result TEXT NOT NULL,
    wait INTEGER NOT NULL,
    held_s REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS poll_log_device ON poll_log(device_id, id);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS registrators (
    id TEXT PRIMARY KEY,
    org TEXT NOT NULL REFERENCES orgs(name),
    name TEXT NOT NULL,
    note TEXT NOT NULL,
    device TEXT NOT NULL,
    created REAL NOT NULL,
    broadcast TEXT NOT NULL,
    archive TEXT NOT NULL,
    cameras TEXT NOT NULL DEFAULT '[]',
    pending_configure INTEGER NOT NULL DEFAULT 0,
    device_id TEXT UNIQUE,
    device_name TEXT NOT NULL DEFAULT '',
    version TEXT NOT NULL DEFAULT '',
    checks TEXT NOT NULL DEFAULT '[]',
    token_jti TEXT UNIQUE,
    linked_at REAL,
    hello_at REAL,
    last_seen REAL
);
CREATE INDEX IF NOT EXISTS registrators_org ON registrators(org, created);
CREATE TABLE IF NOT EXISTS activations (
    code TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    secret BLOB NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    checks TEXT NOT NULL,
    created REAL NOT NULL,
    expires_at REAL NOT NULL,
    activated_at REAL,
    registrator_id TEXT
);
CREATE INDEX IF NOT EXISTS activations_device ON activations(device_id, created);
CREATE TABLE IF NOT EXISTS registration_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    org TEXT NOT NULL REFERENCES orgs(name),
    created_by TEXT NOT NULL,
    title TEXT NOT NULL,
    note TEXT NOT NULL,
    created REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL,
    registrator_id TEXT
);
CREATE INDEX IF NOT EXISTS registration_tokens_org ON registration_tokens(org, created);
"""

# Claims: a device ID may be claimed by several organizations, each claim a camera row
# with its own K and token (the provisioning table keeps NVR entries only). The poll log
# gets one row per (poll, claim), or one aggregated row per period for everything else;
# the per-poll trace of the test hooks is its own bounded table.
V2_CLAIMS = """
CREATE TABLE cameras_v2 (
    camera_id TEXT PRIMARY KEY,
    org TEXT NOT NULL REFERENCES orgs(name),
    device_id TEXT NOT NULL,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    token_jti TEXT NOT NULL UNIQUE,
    hello_at REAL,
    last_seen REAL,
    key BLOB,
    token TEXT,
    claimed_at REAL NOT NULL,
    proven_at REAL,
    moved_at REAL,
    dropped_at REAL,
    UNIQUE (org, device_id)
);
INSERT INTO cameras_v2(camera_id, org, device_id, name, created, token_jti, hello_at,
    last_seen, key, token, claimed_at, proven_at)
SELECT c.camera_id, c.org, c.device_id, c.name, c.created, c.token_jti, c.hello_at,
    c.last_seen, p.key, p.token, c.created, c.hello_at
FROM cameras AS c LEFT JOIN provisioning AS p ON p.camera_id = c.camera_id;
DELETE FROM provisioning WHERE camera_id IS NOT NULL;
DROP TABLE cameras;
ALTER TABLE cameras_v2 RENAME TO cameras;
CREATE INDEX cameras_device ON cameras(device_id, claimed_at);
ALTER TABLE poll_log ADD COLUMN camera_id TEXT;
ALTER TABLE poll_log ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
UPDATE poll_log SET camera_id = (
    SELECT camera_id FROM cameras WHERE cameras.device_id = poll_log.device_id
);
CREATE INDEX poll_log_camera ON poll_log(camera_id, id);
CREATE INDEX poll_log_at ON poll_log(at);
CREATE TABLE poll_trace (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    at REAL NOT NULL,
    result TEXT NOT NULL,
    wait INTEGER NOT NULL,
    held_s REAL NOT NULL
);
CREATE INDEX poll_trace_device ON poll_trace(device_id, id);
INSERT INTO poll_trace(device_id, at, result, wait, held_s)
SELECT device_id, at, result, wait, held_s FROM poll_log ORDER BY id;
"""

# Recording settings per video source (docs/design.md §12.6): a camera
# (`camera/<camera_id>`) or an NVR's camera (`nvr/<registrator_id>/<name>`).
V3_VIDEO = """
CREATE TABLE recording (
    source TEXT PRIMARY KEY,
    org TEXT NOT NULL REFERENCES orgs(name),
    mode TEXT NOT NULL,
    retention_days INTEGER NOT NULL,
    changed REAL NOT NULL
);
"""

# Issue 25: a claim's history holds only the polls that proved its K ("token", or "none":
# a newer claim with the same password won). Rows the earlier rules wrote for every poll
# of a claimed device (a squatter saw when the real camera polled, and when the owner's
# add woke it), and rows of cameras since deleted, go.
V4_POLL_LOG_PER_CLAIM = """
DELETE FROM poll_log WHERE camera_id IS NOT NULL
    AND (result NOT IN ('token', 'none') OR camera_id NOT IN (SELECT camera_id FROM cameras));
"""

MIGRATIONS: list[str] = [V1_BASELINE, V2_CLAIMS, V3_VIDEO, V4_POLL_LOG_PER_CLAIM]

# NVR ownership (issue 25): a device ID may be linked in several organizations (one
# registrator each), each link recording the SHA-256 of the secret of the NVR that made it
# (a later link in that organization must show the same secret); an activation code keeps
# the client address that registered it (per-address bounds) and, once activated, the
# token waiting for its NVR (one waiting token per device ID is offered at the poll at a
# time, oldest first, in turns).
V5_NVR_OWNERSHIP = """
CREATE TABLE registrators_new (
    id TEXT PRIMARY KEY,
    org TEXT NOT NULL REFERENCES orgs(name),
    name TEXT NOT NULL,
    note TEXT NOT NULL,
    device TEXT NOT NULL,
    created REAL NOT NULL,
    broadcast TEXT NOT NULL,
    archive TEXT NOT NULL,
    cameras TEXT NOT NULL DEFAULT '[]',
    pending_configure INTEGER NOT NULL DEFAULT 0,
    device_id TEXT,
    device_name TEXT NOT NULL DEFAULT '',
    version TEXT NOT NULL DEFAULT '',
    checks TEXT NOT NULL DEFAULT '[]',
    token_jti TEXT UNIQUE,
    linked_at REAL,
    hello_at REAL,
    last_seen REAL,
    secret_hash BLOB,
    UNIQUE (org, device_id)
);
INSERT INTO registrators_new(id, org, name, note, device, created, broadcast, archive,
    cameras, pending_configure, device_id, device_name, version, checks, token_jti,
    linked_at, hello_at, last_seen)
SELECT id, org, name, note, device, created, broadcast, archive, cameras,
    pending_configure, device_id, device_name, version, checks, token_jti, linked_at,
    hello_at, last_seen
FROM registrators;
DROP TABLE registrators;
ALTER TABLE registrators_new RENAME TO registrators;
CREATE INDEX registrators_org ON registrators(org, created);
CREATE INDEX registrators_device ON registrators(device_id);
ALTER TABLE activations ADD COLUMN client TEXT NOT NULL DEFAULT '';
ALTER TABLE activations ADD COLUMN token TEXT;
ALTER TABLE activations ADD COLUMN queued_at REAL;
ALTER TABLE activations ADD COLUMN offered_at REAL;
CREATE INDEX activations_client ON activations(client, expires_at);
CREATE INDEX activations_expiry ON activations(expires_at);
CREATE INDEX activations_waiting ON activations(device_id, queued_at) WHERE token IS NOT NULL;
"""

MIGRATIONS.append(V5_NVR_OWNERSHIP)

# Issue 26: a registrator whose NVR was linked anew elsewhere in its organization (reset
# or installed again, then activated into another registrator) says why it is unlinked.
V6_REGISTRATOR_LET_GO = """
ALTER TABLE registrators ADD COLUMN let_go TEXT NOT NULL DEFAULT '';
"""

MIGRATIONS.append(V6_REGISTRATOR_LET_GO)
