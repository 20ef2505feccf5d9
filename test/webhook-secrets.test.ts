/**
 * Webhook secrets at rest (issue 21 §8) against a real PostgreSQL: the stored row holds an AES-GCM
 * ciphertext and its key id, never the secret; the notifier's read decrypts it; a rotation (new key,
 * old key kept for decryption, `bun run webhook-secrets`) re-encrypts every row, plain-text rows from
 * before encryption included, after which the old key is no longer needed. A ciphertext moved onto
 * another row does not decrypt (the endpoint id is authenticated with it).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { createEndpoint, generateSecret, listEndpoints, reencryptSecrets, syncConfiguredEndpoint } from "../shared/webhooks/endpoints.ts";
import { createSecretBox } from "../shared/webhooks/secret-box.ts";
import { createTestDatabase, type TestDatabase } from "./support/read-side.ts";
import { testSecretsKey } from "../shared/dev/webhook-receiver.ts";

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase("whsecrets");
});
afterAll(async () => {
  await db.drop();
});

const stored = (id: string) => db.sql`SELECT secret, secret_ciphertext, secret_key_id FROM webhook_endpoints WHERE endpoint_id = ${id}`.then((r) => r[0]!);

test("the stored column is not the secret; rotation re-encrypts every row and the old key can go", async () => {
  const oldKey = testSecretsKey();
  const oldBox = await createSecretBox(oldKey);
  const secretA = generateSecret();
  const a = await createEndpoint(db.sql, oldBox, { url: "https://a.example/hooks", secret: secretA });
  const configured = await syncConfiguredEndpoint(db.sql, oldBox, { url: "https://b.example/hooks", secret: generateSecret() });
  // A row from before encryption (or written without a key): plain text until the command runs.
  const legacySecret = generateSecret();
  const legacy = await createEndpoint(db.sql, await createSecretBox(undefined), { url: "https://c.example/hooks", secret: legacySecret });

  const rowA = await stored(a.id);
  expect(rowA.secret).toBeNull();
  expect(rowA.secret_key_id).toBe(oldBox.currentKeyId);
  expect(rowA.secret_ciphertext).not.toContain(secretA);
  expect(rowA.secret_ciphertext).not.toContain(secretA.slice("whsec_".length, 20));
  expect(Buffer.from(rowA.secret_ciphertext, "base64").length).toBe(12 + secretA.length + 16); // IV, ciphertext, tag
  const dump = JSON.stringify(await db.sql`SELECT * FROM webhook_endpoints WHERE endpoint_id <> ${legacy.id}`);
  expect(dump).not.toContain(secretA);
  expect(dump).not.toContain(configured!.secret);
  expect((await stored(legacy.id)).secret).toBe(legacySecret);

  // The notifier's read decrypts.
  const read = new Map((await listEndpoints(db.sql, oldBox)).map((e) => [e.id, e.secret]));
  expect(read.get(a.id)).toBe(secretA);
  expect(read.get(legacy.id)).toBe(legacySecret);

  // Rotation: the new key encrypts, the old one still decrypts.
  const newKey = testSecretsKey();
  const rotating = await createSecretBox(newKey, [oldKey]);
  expect(rotating.currentKeyId).not.toBe(oldBox.currentKeyId);
  const b = await createEndpoint(db.sql, rotating, { url: "https://d.example/hooks" });
  expect((await stored(b.id)).secret_key_id).toBe(rotating.currentKeyId);
  expect((await listEndpoints(db.sql, rotating)).length).toBe(4);
  // Without the old key, the rows under it are left out (and reported), the others still delivered.
  const skipped: string[] = [];
  const newOnly = await createSecretBox(newKey);
  expect((await listEndpoints(db.sql, newOnly, (id) => skipped.push(id))).map((e) => e.id).sort()).toEqual([b.id, legacy.id].sort());
  expect(skipped.sort()).toEqual([a.id, "config"].sort());

  // The command's work: everything under the new key, no plain text left.
  expect(await reencryptSecrets(db.sql, rotating)).toEqual({ reencrypted: 3, failed: [] });
  const rows = await db.sql`SELECT secret, secret_key_id FROM webhook_endpoints`;
  expect(rows.every((r) => r.secret === null && r.secret_key_id === rotating.currentKeyId)).toBe(true);
  const after = new Map((await listEndpoints(db.sql, newOnly)).map((e) => [e.id, e.secret]));
  expect(after.get(a.id)).toBe(secretA);
  expect(after.get(legacy.id)).toBe(legacySecret);
  expect(after.size).toBe(4);
  expect(await reencryptSecrets(db.sql, rotating)).toEqual({ reencrypted: 0, failed: [] });

  // A ciphertext copied onto another row does not decrypt there.
  await db.sql`UPDATE webhook_endpoints SET secret_ciphertext = (SELECT secret_ciphertext FROM webhook_endpoints WHERE endpoint_id = ${a.id}) WHERE endpoint_id = ${b.id}`;
  const moved: string[] = [];
  await listEndpoints(db.sql, newOnly, (id) => moved.push(id));
  expect(moved).toEqual([b.id]);
});

test("bun run webhook-secrets: exit 0 once every row is under the key, 1 when a key is missing", async () => {
  const key = testSecretsKey();
  const other = testSecretsKey();
  await createEndpoint(db.sql, await createSecretBox(other), { url: "https://e.example/hooks" });
  const run = (env: Record<string, string>) =>
    Bun.spawnSync([process.execPath, "scripts/webhook-secrets.ts"], { cwd: join(import.meta.dir, ".."), env: { ...process.env, DATABASE_URL: db.url, ...env }, stdout: "pipe", stderr: "pipe" });
  const missing = run({ WEBHOOK_SECRETS_KEY: key });
  expect(missing.exitCode).toBe(1);
  expect(missing.stderr.toString()).toContain("neither WEBHOOK_SECRETS_KEY nor in WEBHOOK_SECRETS_OLD_KEYS");
  // The first test left rows under its own keys: not needed here, so drop them.
  await db.sql`DELETE FROM webhook_endpoints WHERE url <> 'https://e.example/hooks'`;
  const done = run({ WEBHOOK_SECRETS_KEY: key, WEBHOOK_SECRETS_OLD_KEYS: other });
  expect(done.exitCode).toBe(0);
  expect(done.stdout.toString()).toContain("1 secret(s) encrypted");
  expect(run({ WEBHOOK_SECRETS_KEY: "short" }).exitCode).not.toBe(0);
});
