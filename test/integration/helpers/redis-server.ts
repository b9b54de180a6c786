/**
 * A throwaway redis-server for tests that stop, restart or pause Redis: its own free port on
 * 127.0.0.1, no persistence, killed by `stop()`. The machine's shared Redis on 6379 is never
 * touched by these tests.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer, Socket } from "node:net";
import { sleep } from "./redis-fixtures.js";
import { systemBinary } from "./system-binary.js";

export interface ThrowawayRedis {
  readonly port: number;
  readonly url: string;
  /** Kills the server (SIGKILL: a crash, nothing flushed) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port, empty, and waits until it answers PING. */
  start(): Promise<void>;
}

export async function startThrowawayRedis(): Promise<ThrowawayRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const server: ThrowawayRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      const c = child;
      child = undefined;
      if (c === undefined || c.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => c.once("exit", () => resolve()));
      c.kill("SIGKILL");
      await exited;
    },
    async start() {
      if (child !== undefined) throw new Error("The throwaway redis-server is already running");
      child = spawn(
        systemBinary("redis-server"),
        [
          "--port",
          String(port),
          "--bind",
          "127.0.0.1",
          "--save",
          "",
          "--appendonly",
          "no",
          "--daemonize",
          "no",
          "--loglevel",
          "warning",
        ],
        { stdio: "ignore" },
      );
      for (let i = 0; i < 200; i++) {
        if (await answersPing(port)) return;
        if (child.exitCode !== null) break;
        await sleep(25);
      }
      throw new Error(`redis-server on port ${port} did not start`);
    },
  };
  await server.start();
  return server;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    let reply = "";
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once("error", () => done(false));
    socket.on("data", (chunk) => {
      reply += chunk.toString();
      if (reply.includes("\r\n")) done(reply.startsWith("+PONG"));
    });
    socket.connect(port, "127.0.0.1", () => socket.write("PING\r\n"));
  });
}
