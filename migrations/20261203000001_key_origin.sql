-- Where a signing key came from: generated on the token, or imported onto it (`import key`).
-- Keys recorded before this migration were all generated.
ALTER TABLE signing_keys
    ADD COLUMN origin TEXT NOT NULL DEFAULT 'generated'
        CHECK (origin IN ('generated', 'imported'));
