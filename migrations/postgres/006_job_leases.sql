-- A job's lease (issue 17): its runner renews it while it runs; a job whose lease has expired has
-- no live runner (its server died or lost the database), and any server marks it failed. A server
-- that starts fails only those, never another server's running job.
ALTER TABLE jobs ADD COLUMN lease_expires_at TIMESTAMPTZ NOT NULL DEFAULT now() + interval '30 seconds';
