-- engram: the PostgreSQL schema of a fresh database (schema version 5, the same data model as
-- schema.sql at version 5; docs/scale-out.md).
--
-- What differs from schema.sql, and why:
-- - Every tenant table's primary key starts with tenant_id, every unique index includes it and
--   every foreign key between tenant tables carries it, so the tables can be distributed by
--   tenant (Citus `create_distributed_table(…, 'tenant_id')`, co-located with `tenants` by id)
--   with no query or constraint crossing shards. Ids that SQLite keeps unique over the whole
--   database (events, jobs, memories, artifacts) are unique per tenant here; engram always looks
--   them up with their tenant.
-- - Tables that are not one tenant's data: `meta` and `connector_catalog` (reference tables in
--   Citus), `api_keys` (a key is found by its hash before its tenant is known: a reference
--   table, so it references no distributed table; its rows go with their tenant explicitly) and
--   `jobs` (the work queue every node claims from, ordered across tenants: a table on the
--   coordinator, likewise without foreign keys).
-- - INTEGER is BIGINT, REAL is DOUBLE PRECISION, BLOB is BYTEA. Times stay RFC 3339 UTC text
--   with milliseconds and JSON stays text, byte for byte as SQLite holds them, so both backends
--   render the same responses and text order is still time order.
-- - The `seq` columns are identities; `engram migrate --to` sets them past the copied rows.
-- - The schema version is the `schema_version` row of `meta` (SQLite: PRAGMA user_version).

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    plan        TEXT NOT NULL,
    limits_json TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE developers (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id         TEXT NOT NULL,
    name       TEXT NOT NULL,
    email      TEXT NOT NULL,
    company    TEXT,
    role       TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'active',
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX developers_email ON developers(tenant_id, email);

CREATE TABLE projects (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX projects_tenant ON projects(tenant_id, created_at);

CREATE TABLE project_members (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id           TEXT NOT NULL,
    project_id   TEXT NOT NULL,
    developer_id TEXT NOT NULL,
    role         TEXT NOT NULL,
    status       TEXT NOT NULL,
    invited_by   TEXT,
    invited_at   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES projects(tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, developer_id) REFERENCES developers(tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX project_members_unique ON project_members(tenant_id, project_id, developer_id);
CREATE INDEX project_members_developer ON project_members(tenant_id, developer_id);

CREATE TABLE api_keys (
    tenant_id    TEXT NOT NULL,
    id           TEXT NOT NULL,
    developer_id TEXT NOT NULL,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    last4        TEXT NOT NULL,
    scopes       TEXT NOT NULL DEFAULT '',
    mode         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    expires_at   TEXT,
    revoked_at   TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX api_keys_hash ON api_keys(key_hash);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id, created_at);

CREATE TABLE agents (
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id               TEXT NOT NULL,
    project_id       TEXT,
    name             TEXT NOT NULL,
    slug             TEXT NOT NULL,
    model            TEXT NOT NULL,
    instruction      TEXT NOT NULL,
    description      TEXT,
    category         TEXT,
    tags_json        TEXT NOT NULL DEFAULT '[]',
    timeout_secs     BIGINT NOT NULL DEFAULT 30,
    public           BIGINT NOT NULL DEFAULT 0,
    script_json      TEXT,
    status           TEXT NOT NULL DEFAULT 'active',
    invocation_count BIGINT NOT NULL DEFAULT 0,
    created_by       TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    search_name      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES projects(tenant_id, id)
        ON DELETE SET NULL (project_id)
);
CREATE UNIQUE INDEX agents_slug ON agents(tenant_id, slug);
CREATE INDEX agents_tenant ON agents(tenant_id, created_at);

CREATE TABLE connector_catalog (
    slug       TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    category   TEXT NOT NULL,
    status     TEXT NOT NULL,
    mcp_url    TEXT,
    builtin    BIGINT NOT NULL DEFAULT 0,
    hidden     BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);

CREATE TABLE connectors (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id         TEXT NOT NULL,
    project_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    slug       TEXT NOT NULL,
    mcp_url    TEXT NOT NULL,
    category   TEXT,
    status     TEXT NOT NULL DEFAULT 'registered',
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES projects(tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX connectors_slug ON connectors(tenant_id, project_id, slug);

CREATE TABLE agent_sessions (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    agent_id   TEXT NOT NULL,
    id         TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, id)
);

CREATE TABLE agent_messages (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    seq        BIGINT GENERATED BY DEFAULT AS IDENTITY,
    agent_id   TEXT NOT NULL,
    session_id TEXT NOT NULL,
    role       TEXT NOT NULL,
    content    TEXT NOT NULL,
    tool_json  TEXT,
    tokens     BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX agent_messages_session ON agent_messages(tenant_id, agent_id, session_id, seq);

CREATE TABLE invocations (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    mode        TEXT NOT NULL,
    status      TEXT NOT NULL,
    latency_ms  BIGINT NOT NULL,
    tokens_used BIGINT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX invocations_tenant ON invocations(tenant_id, created_at);

CREATE TABLE events (
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    seq             BIGINT GENERATED BY DEFAULT AS IDENTITY,
    id              TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    agent_id        TEXT,
    type            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    metadata        TEXT,
    idempotency_key TEXT,
    salience        DOUBLE PRECISION NOT NULL,
    trace_id        TEXT NOT NULL,
    job_id          TEXT,
    mode            TEXT NOT NULL DEFAULT 'live',
    created_at      TEXT NOT NULL,
    processed_at    TEXT,
    learned_at      TEXT,
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX events_id ON events(tenant_id, id);
CREATE UNIQUE INDEX events_idem ON events(tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_session ON events(tenant_id, session_id, seq) WHERE processed_at IS NOT NULL;
CREATE INDEX events_pending ON events(tenant_id, seq) WHERE processed_at IS NULL;
CREATE INDEX events_agent ON events(tenant_id, agent_id, seq) WHERE processed_at IS NOT NULL;
CREATE INDEX events_unlearned ON events(tenant_id, seq) WHERE learned_at IS NULL;

CREATE TABLE event_signatures (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    signature BIGINT NOT NULL,
    seen      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, signature)
);

CREATE TABLE jobs (
    tenant_id   TEXT NOT NULL,
    seq         BIGINT GENERATED BY DEFAULT AS IDENTITY,
    id          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    input       TEXT NOT NULL DEFAULT '{}',
    result      TEXT,
    error       TEXT,
    attempts    BIGINT NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    started_at  TEXT,
    finished_at TEXT,
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX jobs_id ON jobs(tenant_id, id);
CREATE INDEX jobs_queue ON jobs(kind, status, seq);

CREATE TABLE memories (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    seq        BIGINT GENERATED BY DEFAULT AS IDENTITY,
    id         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    agent_id   TEXT,
    session_id TEXT,
    event_id   TEXT,
    content    TEXT NOT NULL,
    tags_json  TEXT NOT NULL DEFAULT '[]',
    signature  TEXT,
    confidence DOUBLE PRECISION NOT NULL DEFAULT 0.5,
    salience   DOUBLE PRECISION NOT NULL DEFAULT 0.5,
    status     TEXT NOT NULL DEFAULT 'active',
    metadata   TEXT,
    source_events_json TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX memories_id ON memories(tenant_id, id);
CREATE INDEX memories_tenant ON memories(tenant_id, kind, seq);
CREATE INDEX memories_session ON memories(tenant_id, session_id) WHERE kind = 'semantic';
CREATE INDEX memories_signature ON memories(tenant_id, kind, signature) WHERE signature IS NOT NULL;
CREATE INDEX memories_agent ON memories(tenant_id, agent_id, seq);

CREATE TABLE artifacts (
    tenant_id            TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    seq                  BIGINT GENERATED BY DEFAULT AS IDENTITY,
    id                   TEXT NOT NULL,
    type                 TEXT NOT NULL,
    signature            TEXT NOT NULL,
    agent_id             TEXT,
    title                TEXT NOT NULL,
    status               TEXT NOT NULL,
    version              BIGINT NOT NULL DEFAULT 1,
    confidence           DOUBLE PRECISION NOT NULL,
    evidence_count       BIGINT NOT NULL,
    token_count          BIGINT NOT NULL,
    content_json         TEXT NOT NULL,
    source_events_json   TEXT NOT NULL DEFAULT '[]',
    source_memories_json TEXT NOT NULL DEFAULT '[]',
    metadata_json        TEXT NOT NULL DEFAULT '{}',
    superseded_by        TEXT,
    compiled_at          TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX artifacts_id ON artifacts(tenant_id, id);
CREATE UNIQUE INDEX artifacts_identity ON artifacts(tenant_id, type, signature) WHERE status != 'superseded';
CREATE INDEX artifacts_tenant ON artifacts(tenant_id, status, seq);

CREATE TABLE artifact_versions (
    tenant_id      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    artifact_id    TEXT NOT NULL,
    version        BIGINT NOT NULL,
    confidence     DOUBLE PRECISION NOT NULL,
    evidence_count BIGINT NOT NULL,
    content_json   TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, artifact_id, version)
);

CREATE TABLE usage_counters (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    mode      TEXT NOT NULL,
    metric    TEXT NOT NULL,
    bucket    TEXT NOT NULL,
    value     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, mode, metric, bucket)
);

CREATE TABLE vaults (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT,
    sensitivity TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX vaults_name ON vaults(tenant_id, name);

CREATE TABLE vault_items (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id           TEXT NOT NULL,
    vault_id     TEXT NOT NULL,
    title        TEXT NOT NULL,
    item_type    TEXT NOT NULL,
    service_name TEXT,
    tags         TEXT NOT NULL,
    description  TEXT,
    sensitivity  TEXT NOT NULL,
    nonce        BYTEA NOT NULL,
    ciphertext   BYTEA NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, vault_id) REFERENCES vaults(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX vault_items_vault ON vault_items(tenant_id, vault_id, created_at);

CREATE TABLE vault_audit (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    seq        BIGINT GENERATED BY DEFAULT AS IDENTITY,
    id         TEXT NOT NULL,
    item_id    TEXT,
    action     TEXT NOT NULL,
    key_id     TEXT,
    request_id TEXT,
    ip         TEXT,
    reason     TEXT,
    at         TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

INSERT INTO meta(key, value) VALUES ('schema_version', '5');
