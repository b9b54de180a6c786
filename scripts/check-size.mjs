// Size limits of the source, checked by `npm run lint`: no file under src/ over 500 lines, and no
// function of the aggregator's parts over 60 lines (its body, from the opening brace to the
// closing one). Both keep each part readable on its own; a change that needs more should split it.
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MAX_FILE_LINES = 500;
const MAX_FUNCTION_LINES = 60;
/** Folders whose functions are held to MAX_FUNCTION_LINES. */
const FUNCTION_LIMIT_UNDER = ["src/aggregator/"];

function sourceFiles(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (entry.name.endsWith(".ts")) out.push(path);
  }
  return out;
}

function isFunctionLike(node) {
  return (
    ts.isFunctionDeclaration(node) ||
    ts.isMethodDeclaration(node) ||
    ts.isConstructorDeclaration(node) ||
    ts.isGetAccessorDeclaration(node) ||
    ts.isSetAccessorDeclaration(node) ||
    ts.isArrowFunction(node) ||
    ts.isFunctionExpression(node)
  );
}

const problems = [];
for (const file of sourceFiles(join(ROOT, "src"))) {
  const rel = relative(ROOT, file);
  const text = readFileSync(file, "utf8");
  const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
  if (lines > MAX_FILE_LINES) {
    problems.push(`${rel}: ${lines} lines (at most ${MAX_FILE_LINES}): split it`);
  }
  if (!FUNCTION_LIMIT_UNDER.some((dir) => rel.startsWith(dir))) continue;
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const visit = (node) => {
    if (isFunctionLike(node) && node.body !== undefined && ts.isBlock(node.body)) {
      const from = source.getLineAndCharacterOfPosition(node.body.getStart(source)).line;
      const to = source.getLineAndCharacterOfPosition(node.body.getEnd()).line;
      const length = to - from + 1;
      if (length > MAX_FUNCTION_LINES) {
        const name = node.name?.getText(source) ?? "a function";
        problems.push(
          `${rel}:${from + 1}: ${name} is ${length} lines (at most ${MAX_FUNCTION_LINES}): split it`,
        );
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
}

if (problems.length > 0) {
  for (const p of problems) console.error(p);
  process.exit(1);
}
console.log(
  `sizes: every src/ file within ${MAX_FILE_LINES} lines, every function under ${FUNCTION_LIMIT_UNDER.join(", ")} within ${MAX_FUNCTION_LINES}`,
);
