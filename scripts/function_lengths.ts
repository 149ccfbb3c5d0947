/**
 * The longest functions of the product code (`supabase/functions`, tests excluded), by lines from
 * the declaration to its closing brace, read with the TypeScript compiler's parser. A function
 * nested in another counts for itself and inside its parent, as a reader meets it.
 *
 *   deno run -A scripts/function_lengths.ts [--max 150] [--top 15]
 *
 * Exits 1 when a function is longer than `--max`; `tests/function_lengths_test.ts` holds the
 * product to 150 lines.
 * @module
 */
import ts from "typescript";

/** One function and its length. */
export interface FunctionLength {
  file: string;
  name: string;
  line: number;
  lines: number;
}

/** Every function-like declaration of one source text, longest first. */
export function functionLengths(file: string, text: string): FunctionLength[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: FunctionLength[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isFunctionLike(node) && "body" in node && node.body) {
      const start = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const end = source.getLineAndCharacterOfPosition(node.getEnd()).line;
      found.push({ file, name: nameOf(node), line: start + 1, lines: end - start + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found.sort((a, b) => b.lines - a.lines);
}

function nameOf(node: ts.Node): string {
  const named = node as { name?: ts.Node };
  if (named.name && ts.isIdentifier(named.name)) return named.name.text;
  if (named.name && ts.isPrivateIdentifier(named.name)) return named.name.text;
  if (ts.isConstructorDeclaration(node)) return "constructor";
  const parent = node.parent;
  if (parent && ts.isVariableDeclaration(parent) && ts.isIdentifier(parent.name)) {
    return parent.name.text;
  }
  if (parent && ts.isPropertyAssignment(parent) && ts.isIdentifier(parent.name)) {
    return parent.name.text;
  }
  return "(anonymous)";
}

/**
 * The product's source files: every `.ts` under `supabase/functions`, tests and benchmarks left
 * out (also what `tests/docs_test.ts` reads for the log events).
 * @param dir defaults to `supabase/functions` of the working directory
 */
export async function* productSourceFiles(dir = "supabase/functions"): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) yield* productSourceFiles(path);
    else if (/\.ts$/.test(entry.name) && !/_(test|bench)\.ts$/.test(entry.name)) yield path;
  }
}

/** The product code's functions (`productSourceFiles`), longest first. */
export async function productFunctionLengths(root: URL): Promise<FunctionLength[]> {
  const all: FunctionLength[] = [];
  const rootDir = decodeURIComponent(root.pathname);
  const functionsDir = `${rootDir}supabase/functions`;
  for await (const path of productSourceFiles(functionsDir)) {
    const relative = path.slice(rootDir.length);
    all.push(...functionLengths(relative, await Deno.readTextFile(path)));
  }
  return all.sort((a, b) => b.lines - a.lines);
}

if (import.meta.main) {
  const flag = (name: string, fallback: number) => {
    const at = Deno.args.indexOf(name);
    return at >= 0 ? Number(Deno.args[at + 1]) : fallback;
  };
  const max = flag("--max", 150);
  const top = flag("--top", 15);
  const lengths = await productFunctionLengths(new URL("../", import.meta.url));
  for (const f of lengths.slice(0, top)) {
    console.log(`${String(f.lines).padStart(5)}  ${f.file}:${f.line}  ${f.name}`);
  }
  const over = lengths.filter((f) => f.lines > max);
  console.log(`${lengths.length} functions; ${over.length} over ${max} lines`);
  if (over.length > 0) Deno.exit(1);
}
