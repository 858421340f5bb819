/**
 * The registry of models that `check --model M` accepts.
 */
import { counter } from './counter.js';
import { kv } from './kv.js';
import type { ModelFactory } from './model.js';
import { mutex } from './mutex.js';
import { register } from './register.js';
import { set } from './set.js';

/** MODELS maps each model name to its factory, in the order usage text lists them. */
export const MODELS: ReadonlyMap<string, ModelFactory> = new Map(
  [register, kv, counter, mutex, set].map((m) => [m.name, m]),
);
