/** Starts a node:http server on 127.0.0.1, port 0, and returns its base URL and a closer. */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { type Item, parseList } from "structured-headers";

export async function listen(server: Server): Promise<{ url: string; close(): Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((e) => (e ? reject(e) : resolve()));
      }),
  };
}

/** A RateLimit or RateLimit-Policy field as `{ name: { param: value } }`, parsed as an sf-list. */
export function parsedField(
  res: Response,
  name: string,
): Record<string, Record<string, unknown>> | undefined {
  const value = res.headers.get(name);
  if (value === null) return undefined;
  const out: Record<string, Record<string, unknown>> = {};
  for (const item of parseList(value) as Item[]) {
    const params = Object.fromEntries(item[1]);
    if (params["pk"] instanceof ArrayBuffer) params["pk"] = new Uint8Array(params["pk"]);
    out[String(item[0])] = params;
  }
  return out;
}
