-- serialmint admin plane: brands, admin tokens, signing keys, models, serial policies,
-- pushed account/account-key assertions, the signing log, the request-id secret and the
-- audit log. Every table is owned by src/store/ (the only code with SQL).

-- A brand: the snapd account that owns models and signing keys.
CREATE TABLE brands (
    account_id  TEXT PRIMARY KEY CHECK (account_id ~ '^[A-Za-z0-9][A-Za-z0-9-]*$'),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Admin API tokens: only the SHA-256 of the token is kept.
CREATE TABLE admin_tokens (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT NOT NULL,
    token_sha256  BYTEA NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    role          TEXT NOT NULL CHECK (role IN ('admin', 'read-only')),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ,
    last_used_at  TIMESTAMPTZ,
    revoked       BOOLEAN NOT NULL DEFAULT false
);

-- Signing keys on the HSM. A key is created asynchronously: the row exists from the request
-- (status pending) and gets its id and public key when the token has generated it.
CREATE TABLE signing_keys (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE CHECK (name ~ '^(?:[a-z0-9]+-?)*[a-z](?:-?[a-z0-9])*$'),
    brand_id        TEXT NOT NULL REFERENCES brands (account_id),
    key_sha3_384    TEXT UNIQUE,
    public_key      TEXT,
    allowed_types   TEXT[] NOT NULL DEFAULT ARRAY['serial'],
    model_pattern   TEXT NOT NULL DEFAULT '*',
    active          BOOLEAN NOT NULL DEFAULT true,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready', 'failed')),
    error           TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    ready_at        TIMESTAMPTZ,
    CHECK (status <> 'ready' OR (key_sha3_384 IS NOT NULL AND public_key IS NOT NULL))
);

-- Models: what devices claim to be; the API key the factory line sends.
CREATE TABLE models (
    id                  BIGSERIAL PRIMARY KEY,
    brand_id            TEXT NOT NULL REFERENCES brands (account_id),
    name                TEXT NOT NULL CHECK (name ~ '^[a-zA-Z0-9](?:-?[a-zA-Z0-9])*$'),
    api_key             TEXT NOT NULL CHECK (length(api_key) >= 16),
    rate_limit_per_sec  INTEGER CHECK (rate_limit_per_sec IS NULL OR rate_limit_per_sec > 0),
    rate_limit_burst    INTEGER CHECK (rate_limit_burst IS NULL OR rate_limit_burst > 0),
    duplicate_policy    TEXT NOT NULL DEFAULT 'refuse' CHECK (duplicate_policy IN ('refuse', 'reissue')),
    serial_generation   TEXT NOT NULL DEFAULT 'uuid'
                        CHECK (serial_generation IN ('uuid', 'prefix-counter', 'require-proposed')),
    serial_prefix       TEXT NOT NULL DEFAULT '',
    enabled             BOOLEAN NOT NULL DEFAULT true,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (brand_id, name)
);

-- The counter behind prefix+counter serials, one row per model (kept apart from `models` so
-- issuing never locks the row admins edit).
CREATE TABLE serial_counters (
    model_id  BIGINT PRIMARY KEY REFERENCES models (id) ON DELETE CASCADE,
    value     BIGINT NOT NULL DEFAULT 0
);

-- Serial policies: an append-only history per model; the newest revision is active.
CREATE TABLE serial_policies (
    model_id    BIGINT NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    revision    INTEGER NOT NULL CHECK (revision > 0),
    key_id      BIGINT NOT NULL REFERENCES signing_keys (id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by  TEXT NOT NULL,
    PRIMARY KEY (model_id, revision)
);

CREATE FUNCTION serial_policies_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A cascade from deleting the model (only allowed while it issued nothing) runs at trigger
    -- depth > 1; a direct UPDATE or DELETE runs at depth 1 and is refused.
    IF TG_OP = 'DELETE' AND pg_trigger_depth() > 1 THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'serial policies are append-only' USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER serial_policies_append_only
    BEFORE UPDATE OR DELETE ON serial_policies
    FOR EACH ROW EXECUTE FUNCTION serial_policies_append_only();

-- account and account-key assertions pushed by admins (verified against the trust database),
-- served to devices after their serial.
CREATE TABLE account_assertions (
    kind         TEXT NOT NULL CHECK (kind IN ('account', 'account-key')),
    primary_key  TEXT NOT NULL,  -- account-id, or public-key-sha3-384
    account_id   TEXT NOT NULL,
    revision     INTEGER NOT NULL DEFAULT 0,
    text         TEXT NOT NULL,
    pushed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    pushed_by    TEXT NOT NULL,
    PRIMARY KEY (kind, primary_key)
);

-- The signing log: every serial that left the server, committed before the answer.
-- The unique constraints make a duplicate issuance impossible.
CREATE TABLE signing_log (
    id                BIGSERIAL PRIMARY KEY,
    brand_id          TEXT NOT NULL,
    model_id          BIGINT NOT NULL REFERENCES models (id) ON DELETE RESTRICT,
    model_name        TEXT NOT NULL,
    serial            TEXT NOT NULL,
    revision          INTEGER NOT NULL DEFAULT 0 CHECK (revision >= 0),
    device_key_id     TEXT NOT NULL,
    request_id        TEXT NOT NULL,
    signing_key_id    TEXT NOT NULL,
    instance          TEXT NOT NULL,
    issued_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    serial_assertion  TEXT NOT NULL,
    CONSTRAINT signing_log_request_id_key UNIQUE (request_id),
    CONSTRAINT signing_log_serial_key UNIQUE (brand_id, model_name, serial, revision)
);
CREATE INDEX signing_log_issued_at ON signing_log (issued_at);
CREATE INDEX signing_log_model_serial ON signing_log (model_id, serial);

-- The request-id HMAC secret shared by every instance: one row, created once.
CREATE TABLE request_id_secret (
    singleton   BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    secret      BYTEA NOT NULL CHECK (length(secret) = 32),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Who changed what, when.
CREATE TABLE audit_log (
    id      BIGSERIAL PRIMARY KEY,
    at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  JSONB NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at ON audit_log (at);
