/**
 * Webhook secrets at rest (docs/webhooks.md "Secrets"): AES-256-GCM with WebCrypto (no dependency),
 * under WEBHOOK_SECRETS_KEY. The notifier needs each secret in clear to sign, so it is encrypted, not
 * hashed. Stored: `secret_ciphertext` = base64(12-byte random IV ‖ ciphertext ‖ 16-byte tag) and
 * `secret_key_id` beside it, the first 16 hex digits of SHA-256(key): a key names itself, so a rotation
 * only adds the new key and keeps the old one in WEBHOOK_SECRETS_OLD_KEYS until `bun run
 * webhook-secrets` has re-encrypted every row. The endpoint id is the additional authenticated data:
 * a ciphertext copied onto another row does not decrypt.
 */

const IV_BYTES = 12;

interface Key {
  id: string;
  key: CryptoKey;
}

export interface SecretBox {
  /** Id of the key new secrets are encrypted under; null when no key is configured (plain text). */
  readonly currentKeyId: string | null;
  /** Ids of every key that can decrypt (the current one first). */
  readonly keyIds: readonly string[];
  encrypt(secret: string, endpointId: string): Promise<Sealed>;
  /** Throws when the key id is unknown or the ciphertext does not authenticate. */
  decrypt(sealed: { ciphertext: string; keyId: string }, endpointId: string): Promise<string>;
}

/** What goes into the row: either the ciphertext and its key id, or (no key configured) the secret as is. */
type Sealed = { ciphertext: string; keyId: string; plain: null } | { ciphertext: null; keyId: null; plain: string };

class SecretKeyUnknown extends Error {
  constructor(readonly keyId: string) {
    super(`webhook secret encrypted under key ${keyId}, which is neither WEBHOOK_SECRETS_KEY nor in WEBHOOK_SECRETS_OLD_KEYS`);
    this.name = "SecretKeyUnknown";
  }
}

async function importKey(base64: string): Promise<Key> {
  const raw = Buffer.from(base64, "base64");
  const digest = Buffer.from(await crypto.subtle.digest("SHA-256", raw));
  const key = await crypto.subtle.importKey("raw", raw, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
  return { id: digest.subarray(0, 8).toString("hex"), key };
}

/** `current` (base64 of 32 bytes) or none; `old` are accepted for decryption only. */
export async function createSecretBox(current: string | undefined, old: readonly string[] = []): Promise<SecretBox> {
  const keys = await Promise.all([...(current ? [current] : []), ...old].map(importKey));
  const byId = new Map(keys.map((k) => [k.id, k.key]));
  const currentKey = current ? keys[0]! : null;
  const aad = (endpointId: string) => new TextEncoder().encode(`flash-sale webhook secret ${endpointId}`);
  return {
    currentKeyId: currentKey?.id ?? null,
    keyIds: keys.map((k) => k.id),
    async encrypt(secret, endpointId) {
      if (!currentKey) return { ciphertext: null, keyId: null, plain: secret };
      const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
      const sealed = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: aad(endpointId) }, currentKey.key, new TextEncoder().encode(secret));
      return { ciphertext: Buffer.concat([iv, new Uint8Array(sealed)]).toString("base64"), keyId: currentKey.id, plain: null };
    },
    async decrypt({ ciphertext, keyId }, endpointId) {
      const key = byId.get(keyId);
      if (!key) throw new SecretKeyUnknown(keyId);
      const bytes = Buffer.from(ciphertext, "base64");
      const clear = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: bytes.subarray(0, IV_BYTES), additionalData: aad(endpointId) },
        key,
        bytes.subarray(IV_BYTES),
      );
      return new TextDecoder().decode(clear);
    },
  };
}

/** The box from the parsed config (WEBHOOK_SECRETS_KEY, WEBHOOK_SECRETS_OLD_KEYS). */
export function secretBoxFromConfig(config: { WEBHOOK_SECRETS_KEY?: string; WEBHOOK_SECRETS_OLD_KEYS?: string[] }): Promise<SecretBox> {
  return createSecretBox(config.WEBHOOK_SECRETS_KEY, config.WEBHOOK_SECRETS_OLD_KEYS ?? []);
}
