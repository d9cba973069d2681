-- Who called (plans with subscriptions) and what a dry-run policy said.
ALTER TABLE exchanges ADD COLUMN application TEXT;
ALTER TABLE exchanges ADD COLUMN subscription TEXT;
ALTER TABLE exchanges ADD COLUMN policy TEXT;
