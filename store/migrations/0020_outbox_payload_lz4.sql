-- Payloads above PostgreSQL's TOAST threshold (a federation import's canonical-imported
-- rows, up to 1,000 canonicals each) are compressed with lz4 where the server was built
-- with it: pglz took about as long again as storing the rows. Servers without lz4 keep
-- their default.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000
       AND EXISTS (SELECT 1 FROM pg_settings
                   WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE events_outbox ALTER COLUMN payload SET COMPRESSION lz4;
    END IF;
END
$$;
