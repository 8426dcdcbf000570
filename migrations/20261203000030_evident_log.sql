-- Tamper-evident logs (docs/EVIDENT-LOG.md): every signing-log and audit-log row written from
-- now on carries its chain sequence number and SHA-256(previous hash || canonical row bytes),
-- written in the row's transaction. Rows written before this migration keep NULL chain
-- columns: the chain starts at sequence 1 with the first row written after it (the verifier
-- counts the older rows as unchained).

-- The head of each chain: one row per chain, locked (FOR UPDATE) once per group commit or
-- audited change, so writers on every instance extend the chain one after another.
CREATE TABLE log_chain_heads (
    chain       TEXT PRIMARY KEY CHECK (chain IN ('signing-log', 'audit-log')),
    seq         BIGINT NOT NULL DEFAULT 0 CHECK (seq >= 0),
    hash        BYTEA NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                CHECK (length(hash) = 32),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO log_chain_heads (chain) VALUES ('signing-log'), ('audit-log');

ALTER TABLE signing_log
    ADD COLUMN chain_seq BIGINT CHECK (chain_seq > 0),
    ADD COLUMN chain_hash BYTEA CHECK (length(chain_hash) = 32);
CREATE UNIQUE INDEX signing_log_chain_seq ON signing_log (chain_seq);

ALTER TABLE audit_log
    ADD COLUMN chain_seq BIGINT CHECK (chain_seq > 0),
    ADD COLUMN chain_hash BYTEA CHECK (length(chain_hash) = 32);
CREATE UNIQUE INDEX audit_log_chain_seq ON audit_log (chain_seq);

-- Checkpoints: a chain head (sequence, hash, time, instance) signed on the HSM with the audit
-- key (RSA PKCS#1 v1.5 over the SHA-512 DigestInfo of the checkpoint's canonical text).
CREATE TABLE log_checkpoints (
    id          BIGSERIAL PRIMARY KEY,
    chain       TEXT NOT NULL CHECK (chain IN ('signing-log', 'audit-log')),
    seq         BIGINT NOT NULL CHECK (seq >= 0),
    hash        BYTEA NOT NULL CHECK (length(hash) = 32),
    at          TIMESTAMPTZ NOT NULL,
    instance    TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    signature   BYTEA NOT NULL,
    UNIQUE (chain, seq)
);

-- What a signing key is for: serial (and other) assertions, or only audit checkpoints. An
-- audit key is never used for an assertion.
ALTER TABLE signing_keys
    ADD COLUMN purpose TEXT NOT NULL DEFAULT 'assertions' CHECK (purpose IN ('assertions', 'audit'));
