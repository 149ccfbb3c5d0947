/**
 * Tests the embedded Postgres over its wire protocol with real clients (postgres.js), including
 * the multiplexing of several connections onto PGlite's single session.
 *
 * @module
 */

import assert from "node:assert/strict";
import postgres from "postgres";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "./embedded.ts";

/** A test's database server, stopped after the test. */
async function withServer(
  options: Parameters<typeof startEmbeddedPostgres>[0],
  fn: (server: EmbeddedPostgres) => Promise<void>,
): Promise<void> {
  const server = await startEmbeddedPostgres(options);
  try {
    await fn(server);
  } finally {
    await server.stop();
  }
}

function connect(url: string, max = 1): postgres.Sql {
  return postgres(url, { max, onnotice: () => {} });
}

Deno.test("startEmbeddedPostgres() serves several concurrent connections without mixing up their queries", async () => {
  await withServer({}, async (server) => {
    const sql = connect(server.url, 6);
    try {
      // Queries failing at Parse, at Execute and inside transactions, interleaved with good
      // ones: with pglite-socket's stock scheduler the good ones got others' rows, lost
      // messages to another client's error state, or hung.
      const outcomes = await Promise.all(
        Array.from({ length: 120 }, async (_, i) => {
          try {
            if (i % 4 === 0) await sql.unsafe(`select $1::int from missing_table_${i}`, [i]);
            if (i % 4 === 1) {
              await sql.begin(async (tx) => {
                await tx`select ${i}::int`;
                await tx`select 1 / 0`;
              });
            }
            const [row] = await sql`select ${i}::int as i, ${`s${i}`}::text as s`;
            return row.i === i && row.s === `s${i}` ? "ok" : "wrong row";
          } catch (error) {
            return i % 4 <= 1 ? "expected error" : `unexpected: ${(error as Error).message}`;
          }
        }),
      );
      assert.deepEqual(
        outcomes.filter((outcome) => outcome !== "ok" && outcome !== "expected error"),
        [],
      );
      assert.equal(outcomes.filter((outcome) => outcome === "ok").length, 60);
    } finally {
      await sql.end();
    }
  });
});

Deno.test("startEmbeddedPostgres() runs another client's query only after a transaction ends", async () => {
  await withServer({}, async (server) => {
    const writer = connect(server.url);
    const reader = connect(server.url);
    try {
      await writer`create table notes (body text)`;
      let readerDone = false;
      let reading: Promise<number> | null = null;
      await writer.begin(async (tx) => {
        await tx`insert into notes values ('committed at the end')`;
        reading = reader`select count(*)::int as n from notes`.then(([row]) => {
          readerDone = true;
          return row.n as number;
        });
        await new Promise((resolve) => setTimeout(resolve, 50));
        // One session: the reader must not run inside the writer's transaction.
        assert.equal(readerDone, false);
      });
      assert.equal(await reading, 1);
    } finally {
      await writer.end();
      await reader.end();
    }
  });
});

Deno.test("startEmbeddedPostgres() rolls back what a vanished client left open", async () => {
  await withServer({}, async (server) => {
    const other = connect(server.url);
    const leaver = connect(server.url);
    try {
      await other`create table notes (body text)`;
      const reserved = await leaver.reserve();
      await reserved`begin`;
      await reserved`insert into notes values ('never committed')`;
      await leaver.end({ timeout: 0 }); // drops the socket mid-transaction
      const [{ n }] = await other`select count(*)::int as n from notes`;
      assert.equal(n, 0);
    } finally {
      await other.end();
    }
  });
});

Deno.test("startEmbeddedPostgres() refuses connections past maxConnections with SQLSTATE 53300", async () => {
  await withServer({ maxConnections: 1 }, async (server) => {
    const first = connect(server.url);
    const second = connect(server.url);
    try {
      await first`select 1`;
      await assert.rejects(() => second`select 1`, (error: Error & { code?: string }) => {
        assert.equal(error.code, "53300");
        return true;
      });
    } finally {
      await first.end();
      await second.end({ timeout: 0 });
    }
  });
});

Deno.test("startEmbeddedPostgres() provides pgcrypto, btree_gist and uuid-ossp and Supabase's search_path", async () => {
  await withServer({}, async (server) => {
    const sql = connect(server.url);
    try {
      await sql`create schema extensions`;
      for (const name of ["pgcrypto", "btree_gist", "uuid-ossp"]) {
        await sql.unsafe(`create extension "${name}" with schema extensions`);
      }
      const [row] = await sql`
        select length(gen_random_bytes(4)) as bytes, current_setting('search_path') as path
      `;
      assert.deepEqual(row, { bytes: 4, path: '"$user", public, extensions' });
      await sql`reset all`; // what `supabase db push` sends after each migration
      const [{ path }] = await sql`select current_setting('search_path') as path`;
      assert.equal(path, '"$user", public, extensions');
    } finally {
      await sql.end();
    }
  });
});

Deno.test("startEmbeddedPostgres() starts from a dumpDataDir() dump", async () => {
  let dump: Blob | null = null;
  await withServer({}, async (server) => {
    const sql = connect(server.url);
    try {
      await sql`create table notes (body text)`;
      await sql`insert into notes values ('kept')`;
    } finally {
      await sql.end();
    }
    dump = await server.dumpDataDir();
  });
  assert.ok(dump);
  await withServer({ loadDataDir: dump }, async (server) => {
    const sql = connect(server.url);
    try {
      assert.deepEqual([...await sql`select body from notes`], [{ body: "kept" }]);
    } finally {
      await sql.end();
    }
  });
});

Deno.test("startEmbeddedPostgres() stop() is idempotent and closes the port", async () => {
  const server = await startEmbeddedPostgres();
  await Promise.all([server.stop(), server.stop()]);
  await server.stop();
  await assert.rejects(() => Deno.connect({ hostname: "127.0.0.1", port: server.port }));
});
