-- 0002: snapshot_logs.id gets a sequence so that concurrent runs never pick the same id.
-- The reference schema gives the column no default; the sequence starts past the largest id
-- already there, so rows written by older tools keep theirs.

CREATE SEQUENCE IF NOT EXISTS snapshot_logs_id_seq AS INTEGER OWNED BY snapshot_logs.id;

SELECT setval('snapshot_logs_id_seq', COALESCE((SELECT max(id) FROM snapshot_logs), 0) + 1, false);

ALTER TABLE snapshot_logs ALTER COLUMN id SET DEFAULT nextval('snapshot_logs_id_seq');
