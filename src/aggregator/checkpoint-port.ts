/** Where checkpoints go: the shape of `createRedisCheckpointStore()` and of the group's store. */
export interface CheckpointPort {
  save(name: string, bytes: Uint8Array, ttlMs: number): Promise<void>;
  load(name: string): Promise<Uint8Array | undefined>;
}
