import assert from "node:assert/strict";
import { importClientsCommand } from "../../scripts/org/import_clients.ts";
import { startCallStack } from "../support/call_stack.ts";

Deno.test({
  name: "a client imported from a CSV calls in and is greeted by name",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const e2e = await startCallStack({
      openai: {
        scenario: [
          // The double greets by name only when the bridge put the record in the instructions.
          (session) => {
            const update = JSON.stringify(session.sessionUpdates.at(-1) ?? {});
            return {
              kind: "assistant_audio",
              durationMs: 900,
              transcript: update.includes('\\"caller_first_name\\": \\"Priya\\"')
                ? "Hi Priya, thanks for calling Harbor Dental."
                : "Thanks for calling Harbor Dental.",
            };
          },
          {
            kind: "function_call",
            name: "end_call",
            arguments: { reason: "test over" },
            then: { kind: "assistant_audio", durationMs: 300, transcript: "Goodbye!" },
          },
          { kind: "end" },
        ],
        speedFactor: 8,
      },
    });
    const dir = await Deno.makeTempDir();
    try {
      // A US practice's export: local formats, a BOM, a quoted comma.
      const csv = `${dir}/clients.csv`;
      await Deno.writeTextFile(
        csv,
        '\ufeffphone,first_name,last_name,notes\n(555) 010-2233,Priya,Patel,"Prefers Sam, mornings"\n',
      );
      const out: string[] = [];
      const code = await importClientsCommand(["harbor-dental", csv], {
        databaseUrl: e2e.db.url,
        out: (line) => out.push(line),
        err: (line) => out.push(line),
        env: {},
      });
      assert.equal(code, 0, out.join("\n"));
      const call = await e2e.placeCall({
        from: "+15550102233",
        audio: [{ waitForAgentAudioMs: 500, timeoutMs: 15_000 }, { silenceMs: 6_000 }],
        pacing: "realtime",
        maxCallMs: 30_000,
      });
      const session = e2e.openai.sessions[0];
      assert.equal(session.responses[0].transcript, "Hi Priya, thanks for calling Harbor Dental.");
      assert.match(call.finalTwiml ?? "", /<Hangup\s*\/>/);
      assert.equal(e2e.logs("client_identified").length, 1);
    } finally {
      await Deno.remove(dir, { recursive: true });
      await e2e.stop();
    }
  },
});
