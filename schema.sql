-- engram: the schema of a fresh database (schema version 3).
-- Every row belongs to exactly one tenant: every table has tenant_id (the tenants table is the tenant
-- itself; connector_catalog is the global public catalogue) and every index starts with it.
-- Times are RFC 3339 UTC text with milliseconds, so text order is time order.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,            -- ten_…
    name        TEXT NOT NULL,
    plan        TEXT NOT NULL,               -- free | developer | pro | enterprise
    limits_json TEXT,                        -- per-tenant overrides of the plan's limits (operator)
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE developers (
    id         TEXT PRIMARY KEY,             -- dev_…
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    email      TEXT NOT NULL,
    company    TEXT,
    role       TEXT NOT NULL,                -- tenant-wide role: OWNER ADMIN DEVELOPER VIEWER
    status     TEXT NOT NULL DEFAULT 'active', -- active | invited
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX developers_email ON developers(tenant_id, email);

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,            -- proj_…
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX projects_tenant ON projects(tenant_id, created_at);

CREATE TABLE project_members (
    id           TEXT PRIMARY KEY,           -- mem_…
    tenant_id    TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    project_id   TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    developer_id TEXT NOT NULL REFERENCES developers(id) ON DELETE CASCADE,
    role         TEXT NOT NULL,
    status       TEXT NOT NULL,              -- active | invited
    invited_by   TEXT,
    invited_at   TEXT NOT NULL
);
CREATE UNIQUE INDEX project_members_unique ON project_members(tenant_id, project_id, developer_id);
CREATE INDEX project_members_developer ON project_members(tenant_id, developer_id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,           -- key_…
    tenant_id    TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    developer_id TEXT NOT NULL REFERENCES developers(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL,              -- hex SHA-256 of the full key; the key itself is never stored
    prefix       TEXT NOT NULL,              -- e.g. hk_live_
    last4        TEXT NOT NULL,
    scopes       TEXT NOT NULL DEFAULT '',   -- space separated; empty = the creator's role permissions
    mode         TEXT NOT NULL,              -- live | test
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    expires_at   TEXT,
    revoked_at   TEXT
);
CREATE UNIQUE INDEX api_keys_hash ON api_keys(key_hash);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id, created_at);

CREATE TABLE agents (
    id               TEXT PRIMARY KEY,       -- ag_…
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    project_id       TEXT REFERENCES projects(id) ON DELETE SET NULL,
    name             TEXT NOT NULL,
    slug             TEXT NOT NULL,
    model            TEXT NOT NULL,
    instruction      TEXT NOT NULL,
    description      TEXT,
    category         TEXT,
    tags_json        TEXT NOT NULL DEFAULT '[]',
    timeout_secs     INTEGER NOT NULL DEFAULT 30,
    public           INTEGER NOT NULL DEFAULT 0,
    script_json      TEXT,                   -- offline model rules (engram extension)
    status           TEXT NOT NULL DEFAULT 'active',
    invocation_count INTEGER NOT NULL DEFAULT 0,
    created_by       TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    search_name      TEXT NOT NULL DEFAULT '' -- the name case-folded (Unicode) for name search
);
CREATE UNIQUE INDEX agents_slug ON agents(tenant_id, slug);
CREATE INDEX agents_tenant ON agents(tenant_id, created_at);

CREATE TABLE connector_catalog (
    slug       TEXT PRIMARY KEY,             -- global public catalogue (not tenant data)
    name       TEXT NOT NULL,
    category   TEXT NOT NULL,
    status     TEXT NOT NULL,
    mcp_url    TEXT,
    builtin    INTEGER NOT NULL DEFAULT 0,
    hidden     INTEGER NOT NULL DEFAULT 0,   -- a shipped entry the operator removed (stays removed)
    created_at TEXT NOT NULL
);

CREATE TABLE connectors (
    id         TEXT PRIMARY KEY,             -- con_…
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    slug       TEXT NOT NULL,
    mcp_url    TEXT NOT NULL,
    category   TEXT,
    status     TEXT NOT NULL DEFAULT 'registered',
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX connectors_slug ON connectors(tenant_id, project_id, slug);

CREATE TABLE agent_sessions (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    agent_id   TEXT NOT NULL,
    id         TEXT NOT NULL,                -- the caller's session_id, or sess_…
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, id)
) WITHOUT ROWID;

CREATE TABLE agent_messages (
    seq        INTEGER PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    agent_id   TEXT NOT NULL,
    session_id TEXT NOT NULL,
    role       TEXT NOT NULL,                -- user | assistant | tool
    content    TEXT NOT NULL,
    tool_json  TEXT,
    tokens     INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE INDEX agent_messages_session ON agent_messages(tenant_id, agent_id, session_id, seq);

CREATE TABLE invocations (
    id          TEXT PRIMARY KEY,            -- req_… of the invoke request
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    agent_id    TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    mode        TEXT NOT NULL,
    status      TEXT NOT NULL,               -- completed | timeout | error | cancelled
    latency_ms  INTEGER NOT NULL,
    tokens_used INTEGER NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX invocations_tenant ON invocations(tenant_id, created_at);

CREATE TABLE events (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL,           -- evt_…
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    session_id      TEXT NOT NULL,
    agent_id        TEXT,
    type            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    metadata        TEXT,
    idempotency_key TEXT,
    salience        REAL NOT NULL,
    trace_id        TEXT NOT NULL,
    job_id          TEXT,
    mode            TEXT NOT NULL DEFAULT 'live',
    created_at      TEXT NOT NULL,
    processed_at    TEXT,                    -- the capture job finished with it
    learned_at      TEXT                     -- a learn run compiled it
);
CREATE UNIQUE INDEX events_id ON events(id);
CREATE UNIQUE INDEX events_idem ON events(tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_tenant ON events(tenant_id, seq);
-- An event enters the session and agent indexes once processed (keeps their leaf writes off the
-- capture path); until then it is in events_pending. Session and agent queries read both.
CREATE INDEX events_session ON events(tenant_id, session_id, seq) WHERE processed_at IS NOT NULL;
CREATE INDEX events_pending ON events(tenant_id, seq) WHERE processed_at IS NULL;
CREATE INDEX events_agent ON events(tenant_id, agent_id, seq) WHERE processed_at IS NOT NULL;
CREATE INDEX events_unlearned ON events(tenant_id, seq) WHERE learned_at IS NULL;

-- Novelty for salience: how many processed events of each signature (a 64-bit hash of the event
-- type and its normalised key content) a tenant has captured; the writer keeps the unprocessed
-- ones in memory (store/novelty.rs). Only hashes are kept, never content.
CREATE TABLE event_signatures (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    signature INTEGER NOT NULL,
    seen      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, signature)
) WITHOUT ROWID;

CREATE TABLE jobs (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL,               -- job_…
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,               -- capture | learn
    status      TEXT NOT NULL,               -- queued | running | completed | partial | failed
    input       TEXT NOT NULL DEFAULT '{}',
    result      TEXT,
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    started_at  TEXT,
    finished_at TEXT,
    -- PostgreSQL nodes: when a claimed job's lease ends (ms since the epoch, database clock);
    -- a lapsed lease returns the job to the queue. The one SQLite server leaves it NULL.
    lease_until INTEGER
);
CREATE UNIQUE INDEX jobs_id ON jobs(id);
-- The queue: workers claim the oldest queued job of a kind.
CREATE INDEX jobs_queue ON jobs(kind, status, seq);

CREATE TABLE memories (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL,                -- mem_…
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,                -- episodic | semantic
    agent_id   TEXT,
    session_id TEXT,
    event_id   TEXT,                         -- the event an episodic memory renders
    content    TEXT NOT NULL,
    tags_json  TEXT NOT NULL DEFAULT '[]',
    signature  TEXT,                         -- normalised form, for merging semantic memories
    confidence REAL NOT NULL DEFAULT 0.5,
    salience   REAL NOT NULL DEFAULT 0.5,
    status     TEXT NOT NULL DEFAULT 'active', -- active | superseded
    metadata   TEXT,
    source_events_json TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX memories_id ON memories(id);
CREATE INDEX memories_tenant ON memories(tenant_id, kind, seq);
-- Episodic memories are found by session through their events (events_session; an episodic
-- memory's id derives from its event's id, see memories::EPISODIC_ID_OF_EVENT), so only semantic
-- ones are in this index: one random leaf write per processed event less.
CREATE INDEX memories_session ON memories(tenant_id, session_id) WHERE kind = 'semantic';
-- Only semantic memories have a signature; episodic rows stay out of this index.
CREATE INDEX memories_signature ON memories(tenant_id, kind, signature) WHERE signature IS NOT NULL;
CREATE INDEX memories_agent ON memories(tenant_id, agent_id, seq);

CREATE TABLE artifacts (
    seq                  INTEGER PRIMARY KEY,
    id                   TEXT NOT NULL,      -- art_…
    tenant_id            TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    type                 TEXT NOT NULL,      -- task_schema | failure_playbook | causal_pattern | decision_policy
    signature            TEXT NOT NULL,      -- identity within (tenant, type)
    agent_id             TEXT,
    title                TEXT NOT NULL,
    status               TEXT NOT NULL,      -- active | deprecated | superseded
    version              INTEGER NOT NULL DEFAULT 1,
    confidence           REAL NOT NULL,
    evidence_count       INTEGER NOT NULL,
    token_count          INTEGER NOT NULL,
    content_json         TEXT NOT NULL,
    source_events_json   TEXT NOT NULL DEFAULT '[]',
    source_memories_json TEXT NOT NULL DEFAULT '[]',
    metadata_json        TEXT NOT NULL DEFAULT '{}',
    superseded_by        TEXT,
    compiled_at          TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE UNIQUE INDEX artifacts_id ON artifacts(id);
-- An artifact's identity is (tenant, type, signature); superseded predecessors keep the signature.
CREATE UNIQUE INDEX artifacts_identity ON artifacts(tenant_id, type, signature) WHERE status != 'superseded';
CREATE INDEX artifacts_tenant ON artifacts(tenant_id, status, seq);

CREATE TABLE artifact_versions (
    tenant_id      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    artifact_id    TEXT NOT NULL,
    version        INTEGER NOT NULL,
    confidence     REAL NOT NULL,
    evidence_count INTEGER NOT NULL,
    content_json   TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, artifact_id, version)
) WITHOUT ROWID;

-- Counters for usage, metrics and quotas. bucket names the period: 'M2026-11' (month),
-- 'D2026-11-23' (day), 'H2026-11-23T10' (hour), 'N2026-11-23T10:31' (minute), 'T' (all time).
CREATE TABLE usage_counters (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    mode      TEXT NOT NULL,                 -- live | test
    metric    TEXT NOT NULL,
    bucket    TEXT NOT NULL,
    value     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, mode, metric, bucket)
) WITHOUT ROWID;

-- vault:begin (migration 4 runs this part in older databases)
-- The vault (docs/api.md "Vault"): secrets kept apart from memory. A value is stored only as
-- ciphertext (XChaCha20-Poly1305 under the data dir's master key, `crate::vault`), bound to its
-- tenant and item id; nothing of it is indexed or searchable. Query matches metadata only.
CREATE TABLE vaults (
    id          TEXT PRIMARY KEY,            -- vlt_…
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT,
    sensitivity TEXT NOT NULL,               -- low | medium | high | critical
    created_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX vaults_name ON vaults(tenant_id, name);

CREATE TABLE vault_items (
    id           TEXT PRIMARY KEY,           -- vit_…
    tenant_id    TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    vault_id     TEXT NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
    title        TEXT NOT NULL,
    item_type    TEXT NOT NULL,              -- api_key | password | token | certificate | ssh_key | other
    service_name TEXT,
    tags         TEXT NOT NULL,              -- JSON array of strings
    description  TEXT,
    sensitivity  TEXT NOT NULL,
    nonce        BLOB NOT NULL,
    ciphertext   BLOB NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX vault_items_vault ON vault_items(tenant_id, vault_id, created_at);

CREATE TABLE vault_audit (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL,                -- vau_…
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    item_id    TEXT,
    action     TEXT NOT NULL,                -- reveal | reveal_denied | create | update | delete
    key_id     TEXT,
    request_id TEXT,
    ip         TEXT,
    reason     TEXT,
    at         TEXT NOT NULL
);
CREATE INDEX vault_audit_tenant ON vault_audit(tenant_id, seq);
-- vault:end

PRAGMA user_version = 6;
