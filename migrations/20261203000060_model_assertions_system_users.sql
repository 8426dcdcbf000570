-- Model assertions signed here (`sign model`, POST /v1/model-assertions), kept so that
-- `create system-user --model M` checks the model's `system-user-authority` as devices will;
-- the newest revision (then the newest row) of a brand's model is the one used.
CREATE TABLE model_assertions (
    id            BIGSERIAL PRIMARY KEY,
    brand_id      TEXT NOT NULL REFERENCES brands (account_id),
    model         TEXT NOT NULL,
    revision      INTEGER NOT NULL DEFAULT 0 CHECK (revision >= 0),
    key_sha3_384  TEXT NOT NULL,
    assertion     TEXT NOT NULL,
    signed_by     TEXT NOT NULL,
    signed_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX model_assertions_newest ON model_assertions (brand_id, model, revision DESC, id DESC);

-- Every system-user assertion issued (`create system-user`, POST /v1/system-users),
-- committed before the assertion leaves: who, when, for which model, username, serials,
-- until. Never the password nor its hash, nor the email or keys (they stay in the stream
-- handed out).
CREATE TABLE system_users (
    id              BIGSERIAL PRIMARY KEY,
    brand_id        TEXT NOT NULL REFERENCES brands (account_id),  -- the signing authority
    model_brand_id  TEXT NOT NULL,
    model           TEXT NOT NULL,
    username        TEXT NOT NULL,
    serials         TEXT[] NOT NULL DEFAULT '{}',
    until           TIMESTAMPTZ NOT NULL,
    issued_by       TEXT NOT NULL,
    issued_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX system_users_issued_at ON system_users (issued_at);
