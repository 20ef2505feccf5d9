-- rebuild: skip
-- The notifier's state, second pass (issue 21; docs/webhooks.md). Not a read model: `bun run rebuild`
-- does not replay this file.

-- Secrets encrypted at rest (shared/webhooks/secret-box.ts): AES-256-GCM ciphertext and the id of its
-- key. `secret` (plain text) stays only for rows written without WEBHOOK_SECRETS_KEY, or before this
-- migration, until `bun run webhook-secrets` encrypts them. A row has exactly one of the two forms.
ALTER TABLE webhook_endpoints ALTER COLUMN secret DROP NOT NULL;
ALTER TABLE webhook_endpoints ADD COLUMN secret_ciphertext text, ADD COLUMN secret_key_id text;
ALTER TABLE webhook_endpoints ADD CONSTRAINT webhook_endpoints_one_secret CHECK (
  (secret IS NULL) <> (secret_ciphertext IS NULL) AND (secret_ciphertext IS NULL) = (secret_key_id IS NULL));

-- The delivery loop pages through an endpoint's pending deliveries stock by stock (services/notifier/
-- window.ts): the next stocks after a cursor (a loose index scan) and each one's lowest pending versions.
CREATE INDEX webhook_deliveries_pending_stock ON webhook_deliveries (endpoint_id, stock_id, version) WHERE status = 'pending';

-- Retention (bun run retention) deletes finished deliveries, dead letters and events by age, in batches.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (created_at) WHERE status <> 'pending';
CREATE INDEX webhook_dead_letters_died ON webhook_dead_letters (died_at);
CREATE INDEX webhook_events_recorded ON webhook_events (recorded_at);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
