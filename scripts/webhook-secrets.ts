/**
 * `bun run webhook-secrets`: encrypts every webhook secret under the current WEBHOOK_SECRETS_KEY —
 * the ones still in plain text (written before encryption, or without a key) and the ones under an
 * older key, which must then be listed in WEBHOOK_SECRETS_OLD_KEYS. Prints what it did; exits 1 when
 * a secret could not be decrypted (its key is missing), so a rotation is finished only on exit 0.
 *
 * Rotation (docs/webhooks.md "Secrets"):
 *   1. new key: `openssl rand -base64 32`;
 *   2. api and notifier: WEBHOOK_SECRETS_KEY=<new>, WEBHOOK_SECRETS_OLD_KEYS=<old>; restart them;
 *   3. `WEBHOOK_SECRETS_KEY=<new> WEBHOOK_SECRETS_OLD_KEYS=<old> bun run webhook-secrets` (exit 0);
 *   4. drop WEBHOOK_SECRETS_OLD_KEYS, restart; destroy the old key.
 *
 *   DATABASE_URL  postgres://flashsale:flashsale@127.0.0.1:5432/flashsale (default)
 */
import postgres from "postgres";
import { loadConfigOrExit, webhookSecretsToolSchema } from "../shared/config.ts";
import { reencryptSecrets } from "../shared/webhooks/endpoints.ts";
import { secretBoxFromConfig } from "../shared/webhooks/secret-box.ts";

const config = loadConfigOrExit(webhookSecretsToolSchema, "webhook-secrets");
const box = await secretBoxFromConfig(config);
const sql = postgres(config.DATABASE_URL, { max: 1, connect_timeout: 10, onnotice: () => {}, connection: { application_name: "webhook-secrets" } });
let code = 0;
try {
  const { reencrypted, failed } = await reencryptSecrets(sql, box);
  console.log(`webhook-secrets: ${reencrypted} secret(s) encrypted under key ${box.currentKeyId}`);
  for (const f of failed) console.error(`webhook-secrets: endpoint ${f.id}: ${f.error}`);
  if (failed.length > 0) code = 1;
} catch (err) {
  code = 1;
  console.error(`webhook-secrets: ${(err as Error).message}`);
} finally {
  await sql.end({ timeout: 5 });
}
process.exit(code);
