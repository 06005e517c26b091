-- Which catalog an evaluation measured (Catalog.fingerprint()): a report of another catalog state is stale.
ALTER TABLE evaluations ADD COLUMN catalog_fingerprint TEXT;
