-- engram: the PostgreSQL schema of a fresh database (schema version 6, the same data model as
-- schema.sql at version 6, plus what only PostgreSQL nodes use, between `nodes:begin` and
-- `nodes:end`: the search feed and the limits nodes share; docs/scale-out.md).
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
-- - Text columns compare and sort byte for byte (COLLATE "C"), as SQLite's do, whatever the
--   database's default collation; `nocase` and the functions below are the few SQLite built-ins
--   engram's queries use, so one SQL text runs on both backends (src/store/sql.rs).

-- SQLite's NOCASE (equality and order without case), as a nondeterministic ICU collation.
CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
-- instr(haystack, needle): 1-based position, 0 when absent.
CREATE FUNCTION instr(haystack text, needle text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT strpos(haystack, needle) $$;
-- json_each over a JSON array held as text: (key = index, value = element as text).
CREATE FUNCTION json_each(doc text) RETURNS TABLE(key text, value text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT (n - 1)::text, v FROM jsonb_array_elements_text(doc::jsonb) WITH ORDINALITY AS e(v, n)
    $$;
-- json_extract(doc, '$.a.b') of a JSON object held as text, as text.
CREATE FUNCTION json_extract(doc text, path text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT doc::jsonb #>> string_to_array(substr(path, 3), '.')
    $$;
CREATE FUNCTION json_array_length(doc text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT jsonb_array_length(doc::jsonb) $$;

CREATE TABLE meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT COLLATE "C" NOT NULL
);

CREATE TABLE tenants (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL,
    plan        TEXT COLLATE "C" NOT NULL,
    limits_json TEXT COLLATE "C",
    created_at  TEXT COLLATE "C" NOT NULL,
    updated_at  TEXT COLLATE "C" NOT NULL
);

CREATE TABLE developers (
    id         TEXT COLLATE "C" NOT NULL,
    tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name       TEXT COLLATE "C" NOT NULL,
    email      TEXT COLLATE "C" NOT NULL,
    company    TEXT COLLATE "C",
    role       TEXT COLLATE "C" NOT NULL,
    status     TEXT COLLATE "C" NOT NULL DEFAULT 'active',
    created_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX developers_email ON developers(tenant_id, email);

CREATE TABLE projects (
    id          TEXT COLLATE "C" NOT NULL,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        TEXT COLLATE "C" NOT NULL,
    description TEXT COLLATE "C",
    created_by  TEXT COLLATE "C" NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    updated_at  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX projects_tenant ON projects(tenant_id, created_at);

CREATE TABLE project_members (
    id           TEXT COLLATE "C" NOT NULL,
    tenant_id    TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    project_id   TEXT COLLATE "C" NOT NULL,
    developer_id TEXT COLLATE "C" NOT NULL,
    role         TEXT COLLATE "C" NOT NULL,
    status       TEXT COLLATE "C" NOT NULL,
    invited_by   TEXT COLLATE "C",
    invited_at   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES projects(tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, developer_id) REFERENCES developers(tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX project_members_unique ON project_members(tenant_id, project_id, developer_id);
CREATE INDEX project_members_developer ON project_members(tenant_id, developer_id);

CREATE TABLE api_keys (
    id           TEXT COLLATE "C" NOT NULL,
    tenant_id    TEXT COLLATE "C" NOT NULL,
    developer_id TEXT COLLATE "C" NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    key_hash     TEXT COLLATE "C" NOT NULL,
    prefix       TEXT COLLATE "C" NOT NULL,
    last4        TEXT COLLATE "C" NOT NULL,
    scopes       TEXT COLLATE "C" NOT NULL DEFAULT '',
    mode         TEXT COLLATE "C" NOT NULL,
    created_at   TEXT COLLATE "C" NOT NULL,
    last_used_at TEXT COLLATE "C",
    expires_at   TEXT COLLATE "C",
    revoked_at   TEXT COLLATE "C",
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX api_keys_hash ON api_keys(key_hash);
-- A key's last use is recorded by its id alone.
CREATE INDEX api_keys_by_id ON api_keys(id);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id, created_at);

CREATE TABLE agents (
    id               TEXT COLLATE "C" NOT NULL,
    tenant_id        TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    project_id       TEXT COLLATE "C",
    name             TEXT COLLATE "C" NOT NULL,
    slug             TEXT COLLATE "C" NOT NULL,
    model            TEXT COLLATE "C" NOT NULL,
    instruction      TEXT COLLATE "C" NOT NULL,
    description      TEXT COLLATE "C",
    category         TEXT COLLATE "C",
    tags_json        TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    timeout_secs     BIGINT NOT NULL DEFAULT 30,
    public           BIGINT NOT NULL DEFAULT 0,
    script_json      TEXT COLLATE "C",
    status           TEXT COLLATE "C" NOT NULL DEFAULT 'active',
    invocation_count BIGINT NOT NULL DEFAULT 0,
    created_by       TEXT COLLATE "C",
    created_at       TEXT COLLATE "C" NOT NULL,
    updated_at       TEXT COLLATE "C" NOT NULL,
    search_name      TEXT COLLATE "C" NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES projects(tenant_id, id)
        ON DELETE SET NULL (project_id)
);
CREATE UNIQUE INDEX agents_slug ON agents(tenant_id, slug);
CREATE INDEX agents_tenant ON agents(tenant_id, created_at);

CREATE TABLE connector_catalog (
    slug       TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL,
    category   TEXT COLLATE "C" NOT NULL,
    status     TEXT COLLATE "C" NOT NULL,
    mcp_url    TEXT COLLATE "C",
    builtin    BIGINT NOT NULL DEFAULT 0,
    hidden     BIGINT NOT NULL DEFAULT 0,
    created_at TEXT COLLATE "C" NOT NULL
);

CREATE TABLE connectors (
    id         TEXT COLLATE "C" NOT NULL,
    tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    project_id TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    slug       TEXT COLLATE "C" NOT NULL,
    mcp_url    TEXT COLLATE "C" NOT NULL,
    category   TEXT COLLATE "C",
    status     TEXT COLLATE "C" NOT NULL DEFAULT 'registered',
    created_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES projects(tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX connectors_slug ON connectors(tenant_id, project_id, slug);

CREATE TABLE agent_sessions (
    tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    agent_id   TEXT COLLATE "C" NOT NULL,
    id         TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, id)
);

CREATE TABLE agent_messages (
    seq        BIGINT GENERATED BY DEFAULT AS IDENTITY,
    tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    agent_id   TEXT COLLATE "C" NOT NULL,
    session_id TEXT COLLATE "C" NOT NULL,
    role       TEXT COLLATE "C" NOT NULL,
    content    TEXT COLLATE "C" NOT NULL,
    tool_json  TEXT COLLATE "C",
    tokens     BIGINT NOT NULL DEFAULT 0,
    created_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX agent_messages_session ON agent_messages(tenant_id, agent_id, session_id, seq);

CREATE TABLE invocations (
    id          TEXT COLLATE "C" NOT NULL,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    agent_id    TEXT COLLATE "C" NOT NULL,
    session_id  TEXT COLLATE "C" NOT NULL,
    mode        TEXT COLLATE "C" NOT NULL,
    status      TEXT COLLATE "C" NOT NULL,
    latency_ms  BIGINT NOT NULL,
    tokens_used BIGINT NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX invocations_tenant ON invocations(tenant_id, created_at);

CREATE TABLE events (
    seq             BIGINT GENERATED BY DEFAULT AS IDENTITY,
    id              TEXT COLLATE "C" NOT NULL,
    tenant_id       TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    session_id      TEXT COLLATE "C" NOT NULL,
    agent_id        TEXT COLLATE "C",
    type            TEXT COLLATE "C" NOT NULL,
    payload         TEXT COLLATE "C" NOT NULL,
    metadata        TEXT COLLATE "C",
    idempotency_key TEXT COLLATE "C",
    salience        DOUBLE PRECISION NOT NULL,
    trace_id        TEXT COLLATE "C" NOT NULL,
    job_id          TEXT COLLATE "C",
    mode            TEXT COLLATE "C" NOT NULL DEFAULT 'live',
    created_at      TEXT COLLATE "C" NOT NULL,
    processed_at    TEXT COLLATE "C",
    learned_at      TEXT COLLATE "C",
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX events_id ON events(tenant_id, id);
CREATE UNIQUE INDEX events_idem ON events(tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_session ON events(tenant_id, session_id, seq) WHERE processed_at IS NOT NULL;
CREATE INDEX events_pending ON events(tenant_id, seq) WHERE processed_at IS NULL;
CREATE INDEX events_agent ON events(tenant_id, agent_id, seq) WHERE processed_at IS NOT NULL;
CREATE INDEX events_unlearned ON events(tenant_id, seq) WHERE learned_at IS NULL;

CREATE TABLE event_signatures (
    tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    signature BIGINT NOT NULL,
    seen      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, signature)
);

-- The novelty counts of events not processed yet (SQLite keeps them in a TEMP table of its one
-- writer; here every node's writes must see them): store/novelty.rs.
CREATE TABLE novelty_pending (
    tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    signature BIGINT NOT NULL,
    n         BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, signature)
);

CREATE TABLE jobs (
    seq         BIGINT GENERATED BY DEFAULT AS IDENTITY,
    id          TEXT COLLATE "C" NOT NULL,
    tenant_id   TEXT COLLATE "C" NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL,
    status      TEXT COLLATE "C" NOT NULL,
    input       TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    result      TEXT COLLATE "C",
    error       TEXT COLLATE "C",
    attempts    BIGINT NOT NULL DEFAULT 0,
    created_at  TEXT COLLATE "C" NOT NULL,
    started_at  TEXT COLLATE "C",
    finished_at TEXT COLLATE "C",
    lease_until BIGINT,
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX jobs_id ON jobs(tenant_id, id);
-- Workers finish a job by its id alone (the queue is not one tenant's: no tenant in the key).
CREATE INDEX jobs_by_id ON jobs(id);
CREATE INDEX jobs_queue ON jobs(kind, status, seq);

CREATE TABLE memories (
    seq        BIGINT GENERATED BY DEFAULT AS IDENTITY,
    id         TEXT COLLATE "C" NOT NULL,
    tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind       TEXT COLLATE "C" NOT NULL,
    agent_id   TEXT COLLATE "C",
    session_id TEXT COLLATE "C",
    event_id   TEXT COLLATE "C",
    content    TEXT COLLATE "C" NOT NULL,
    tags_json  TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    signature  TEXT COLLATE "C",
    confidence DOUBLE PRECISION NOT NULL DEFAULT 0.5,
    salience   DOUBLE PRECISION NOT NULL DEFAULT 0.5,
    status     TEXT COLLATE "C" NOT NULL DEFAULT 'active',
    metadata   TEXT COLLATE "C",
    source_events_json TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    created_at TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX memories_id ON memories(tenant_id, id);
CREATE INDEX memories_tenant ON memories(tenant_id, kind, seq);
CREATE INDEX memories_session ON memories(tenant_id, session_id) WHERE kind = 'semantic';
CREATE INDEX memories_signature ON memories(tenant_id, kind, signature) WHERE signature IS NOT NULL;
CREATE INDEX memories_agent ON memories(tenant_id, agent_id, seq);

CREATE TABLE artifacts (
    seq                  BIGINT GENERATED BY DEFAULT AS IDENTITY,
    id                   TEXT COLLATE "C" NOT NULL,
    tenant_id            TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    type                 TEXT COLLATE "C" NOT NULL,
    signature            TEXT COLLATE "C" NOT NULL,
    agent_id             TEXT COLLATE "C",
    title                TEXT COLLATE "C" NOT NULL,
    status               TEXT COLLATE "C" NOT NULL,
    version              BIGINT NOT NULL DEFAULT 1,
    confidence           DOUBLE PRECISION NOT NULL,
    evidence_count       BIGINT NOT NULL,
    token_count          BIGINT NOT NULL,
    content_json         TEXT COLLATE "C" NOT NULL,
    source_events_json   TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    source_memories_json TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    metadata_json        TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    superseded_by        TEXT COLLATE "C",
    compiled_at          TEXT COLLATE "C" NOT NULL,
    created_at           TEXT COLLATE "C" NOT NULL,
    updated_at           TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX artifacts_id ON artifacts(tenant_id, id);
CREATE UNIQUE INDEX artifacts_identity ON artifacts(tenant_id, type, signature) WHERE status != 'superseded';
CREATE INDEX artifacts_tenant ON artifacts(tenant_id, status, seq);

CREATE TABLE artifact_versions (
    tenant_id      TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    artifact_id    TEXT COLLATE "C" NOT NULL,
    version        BIGINT NOT NULL,
    confidence     DOUBLE PRECISION NOT NULL,
    evidence_count BIGINT NOT NULL,
    content_json   TEXT COLLATE "C" NOT NULL,
    created_at     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, artifact_id, version)
);

CREATE TABLE usage_counters (
    tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    mode      TEXT COLLATE "C" NOT NULL,
    metric    TEXT COLLATE "C" NOT NULL,
    bucket    TEXT COLLATE "C" NOT NULL,
    value     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, mode, metric, bucket)
);

CREATE TABLE vaults (
    id          TEXT COLLATE "C" NOT NULL,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        TEXT COLLATE "C" NOT NULL,
    description TEXT COLLATE "C",
    sensitivity TEXT COLLATE "C" NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX vaults_name ON vaults(tenant_id, name);

CREATE TABLE vault_items (
    id           TEXT COLLATE "C" NOT NULL,
    tenant_id    TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    vault_id     TEXT COLLATE "C" NOT NULL,
    title        TEXT COLLATE "C" NOT NULL,
    item_type    TEXT COLLATE "C" NOT NULL,
    service_name TEXT COLLATE "C",
    tags         TEXT COLLATE "C" NOT NULL,
    description  TEXT COLLATE "C",
    sensitivity  TEXT COLLATE "C" NOT NULL,
    nonce        BYTEA NOT NULL,
    ciphertext   BYTEA NOT NULL,
    created_at   TEXT COLLATE "C" NOT NULL,
    updated_at   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, vault_id) REFERENCES vaults(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX vault_items_vault ON vault_items(tenant_id, vault_id, created_at);

CREATE TABLE vault_audit (
    seq        BIGINT GENERATED BY DEFAULT AS IDENTITY,
    id         TEXT COLLATE "C" NOT NULL,
    tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    item_id    TEXT COLLATE "C",
    action     TEXT COLLATE "C" NOT NULL,
    key_id     TEXT COLLATE "C",
    request_id TEXT COLLATE "C",
    ip         TEXT COLLATE "C",
    reason     TEXT COLLATE "C",
    at         TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

-- nodes:begin
-- What only PostgreSQL nodes use: the search feed and the shared limits.
--
-- The search feed (docs/scale-out.md, "Search on every node"): every statement that inserts,
-- changes (in a column a search document shows) or deletes memories or artifacts adds the ids of
-- its rows here, in its own transaction, with that transaction's id. Each node's index follows
-- the feed: it reads the rows of transactions that committed since its last read (by snapshot,
-- so a transaction that commits late is never skipped) and indexes the rows' current state.
CREATE TABLE index_feed (
    tenant_id TEXT COLLATE "C" NOT NULL,
    seq       BIGINT GENERATED ALWAYS AS IDENTITY,
    doc_id    TEXT COLLATE "C" NOT NULL,
    xid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX index_feed_xid ON index_feed(xid, seq);
CREATE INDEX index_feed_at ON index_feed(at);

-- Inserts and deletes add every row.
CREATE FUNCTION engram_feed_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO index_feed(tenant_id, doc_id) SELECT tenant_id, id FROM changed_rows;
    IF FOUND THEN
        PERFORM pg_notify('engram_feed', '');
    END IF;
    RETURN NULL;
END $$;

-- An update adds the rows whose shown columns changed (a statement trigger cannot name columns
-- when it reads transition tables).
CREATE FUNCTION engram_feed_memories_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO index_feed(tenant_id, doc_id)
    SELECT n.tenant_id, n.id FROM new_rows n
    JOIN old_rows o ON o.tenant_id = n.tenant_id AND o.seq = n.seq
    WHERE (o.kind, o.agent_id, o.session_id, o.content, o.tags_json, o.confidence, o.salience,
           o.status, o.created_at)
          IS DISTINCT FROM
          (n.kind, n.agent_id, n.session_id, n.content, n.tags_json, n.confidence, n.salience,
           n.status, n.created_at);
    IF FOUND THEN
        PERFORM pg_notify('engram_feed', '');
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION engram_feed_artifacts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO index_feed(tenant_id, doc_id)
    SELECT n.tenant_id, n.id FROM new_rows n
    JOIN old_rows o ON o.tenant_id = n.tenant_id AND o.seq = n.seq
    WHERE (o.type, o.agent_id, o.title, o.status, o.confidence, o.content_json, o.updated_at)
          IS DISTINCT FROM
          (n.type, n.agent_id, n.title, n.status, n.confidence, n.content_json, n.updated_at);
    IF FOUND THEN
        PERFORM pg_notify('engram_feed', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER memories_feed_insert AFTER INSERT ON memories
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION engram_feed_new();
CREATE TRIGGER memories_feed_update AFTER UPDATE ON memories
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engram_feed_memories_changed();
CREATE TRIGGER memories_feed_delete AFTER DELETE ON memories
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION engram_feed_new();
CREATE TRIGGER artifacts_feed_insert AFTER INSERT ON artifacts
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION engram_feed_new();
CREATE TRIGGER artifacts_feed_update AFTER UPDATE ON artifacts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engram_feed_artifacts_changed();
CREATE TRIGGER artifacts_feed_delete AFTER DELETE ON artifacts
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION engram_feed_new();

-- Limits shared by every node (docs/scale-out.md, "Limits across nodes"). A request-rate bucket
-- (GCRA): its theoretical arrival time in microseconds of the nodes' clock; nodes take requests
-- from it a few at a time. `bucket` is a key id or `tenant`.
CREATE TABLE rate_buckets (
    tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    bucket    TEXT COLLATE "C" NOT NULL,
    tat_us    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, bucket)
);
-- Monthly quota units reserved (committed, or held by a request in flight) per tenant, mode,
-- usage metric and month bucket; starts from the month's usage counter when first needed.
CREATE TABLE quota_reserved (
    tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    mode      TEXT COLLATE "C" NOT NULL,
    metric    TEXT COLLATE "C" NOT NULL,
    bucket    TEXT COLLATE "C" NOT NULL,
    reserved  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, mode, metric, bucket)
);
-- nodes:end

INSERT INTO meta(key, value) VALUES ('schema_version', '6');
