/** A node's default id: what names a node run when the service gives no `nodeId`. */
import { hostname } from "node:os";

/** `<hostname>-<pid>` reduced to the id alphabet. */
export function defaultNodeId(): string {
  const host =
    hostname()
      .replace(/[^A-Za-z0-9_-]/g, "-")
      .slice(0, 40) || "node";
  return `${host}-${process.pid}`;
}
