-- Admin tokens limited to some brands (an ODM's token for one of its brands): NULL is every
-- brand; otherwise requests for any other brand are refused with 403.
ALTER TABLE admin_tokens ADD COLUMN brands TEXT[] CHECK (brands IS NULL OR cardinality(brands) > 0);
