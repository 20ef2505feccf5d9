/**
 * `bun run notifier:resend [--endpoint <id>]`: puts the webhook dead letters back in the queue
 * (attempts from 0, due now) and removes them from the dead-letter table, in one transaction; the
 * running notifier delivers them within its poll interval. Prints how many were re-queued.
 *
 *   DATABASE_URL  postgres://flashsale:flashsale@127.0.0.1:5432/flashsale (default)
 */
import { parseArgs } from "node:util";
import postgres from "postgres";
import { z } from "zod";
import { loadConfigOrExit } from "../shared/config.ts";
import { resendDeadLetters } from "../shared/webhooks/dead-letters.ts";

const config = loadConfigOrExit(z.object({ DATABASE_URL: z.string().url().default("postgres://flashsale:flashsale@127.0.0.1:5432/flashsale") }), "notifier-resend");
const { values } = parseArgs({ options: { endpoint: { type: "string" } }, strict: true });

const sql = postgres(config.DATABASE_URL, { max: 1, connect_timeout: 10, onnotice: () => {}, connection: { application_name: "notifier-resend" } });
let code = 0;
try {
  const count = await resendDeadLetters(sql, { endpointId: values.endpoint });
  console.log(`notifier:resend: ${count} dead letter(s) re-queued${values.endpoint ? ` for endpoint ${values.endpoint}` : ""}`);
} catch (err) {
  code = 1;
  console.error(`notifier:resend: ${(err as Error).message}`);
} finally {
  await sql.end({ timeout: 5 });
}
process.exit(code);
