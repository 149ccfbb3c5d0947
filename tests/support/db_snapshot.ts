/**
 * Speaks SQL to take a cheap fingerprint of a database: the row count of every table in the
 * `public` and `auth` schemas, to show that rejected requests changed nothing.
 * @module
 */
import type postgres from "postgres";

/** Row counts by `schema.table`. */
export type RowCounts = Record<string, number>;

/**
 * Counts the rows of every ordinary table in `public` and `auth`.
 * @param sql a connection to the database
 */
export async function snapshotRowCounts(sql: postgres.Sql): Promise<RowCounts> {
  const tables = await sql<{ schema: string; name: string }[]>`
    select n.nspname as schema, c.relname as name
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('public', 'auth') and c.relkind = 'r'
    order by 1, 2`;
  const counts: RowCounts = {};
  for (const { schema, name } of tables) {
    const [{ count }] = await sql.unsafe<{ count: number }[]>(
      `select count(*)::int as count from "${schema}"."${name}"`,
    );
    counts[`${schema}.${name}`] = count;
  }
  return counts;
}
