// Copies non-TypeScript runtime assets (Lua scripts) from src/ to dist/src/, keeping paths.
import { cpSync, existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const EXTENSIONS = [".lua"];

function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (EXTENSIONS.some((e) => name.endsWith(e))) {
      const target = join(root, "dist", relative(root, path));
      mkdirSync(dirname(target), { recursive: true });
      cpSync(path, target);
    }
  }
}

if (existsSync(join(root, "src"))) walk(join(root, "src"));
