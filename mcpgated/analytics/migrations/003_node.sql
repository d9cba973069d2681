-- The gateway node that wrote each record ([gateway] node); NULL for records
-- written before nodes were recorded.
ALTER TABLE exchanges ADD COLUMN node TEXT;
