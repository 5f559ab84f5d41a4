/**
 * Workflow histories to and from the JSON form of Temporal's tools (`temporal workflow show
 * --output json`): the replay fixtures (docs/upgrades.md).
 *
 * The SDK has the same two functions (`historyToJSON`, `historyFromJSON` of
 * `@temporalio/common/lib/proto-utils`), but they break ("type must be a Type") when npm installs
 * `@temporalio/common` and `@temporalio/proto` with two copies of protobufjs, as it does here:
 * the JSON codec must be the one of the protobufjs copy that built the proto types, so it is
 * resolved from `@temporalio/proto`.
 */
import { createRequire } from 'node:module';
import type * as protos from '@temporalio/proto';
import type { temporal } from '@temporalio/proto';

type History = temporal.api.history.v1.IHistory;

interface ProtoJson {
  toJson(type: unknown, message: unknown): unknown;
  fromJson(type: unknown, json: unknown, options: { ignoreUnknownFields: boolean }): unknown;
}

const require = createRequire(import.meta.url);
const protoRequire = createRequire(require.resolve('@temporalio/proto'));
const proto = protoRequire('@temporalio/proto') as typeof protos;
const { toJson, fromJson } = protoRequire('protobufjs/ext/protojson') as ProtoJson;
const { patchProtobufRoot } = require('@temporalio/proto/lib/patch-protobuf-root') as {
  patchProtobufRoot(root: unknown): { lookupType(name: string): unknown };
};
const historyType = patchProtobufRoot(proto).lookupType('temporal.api.history.v1.History');

/** A history (as `fetchHistory()` returns it) as JSON text. */
export function historyToJSON(history: History): string {
  const message = proto.temporal.api.history.v1.History.fromObject(history);
  return JSON.stringify(toJson(historyType, message), null, 2);
}

/** A history read back from its JSON form, ready for `Worker.runReplayHistories`. */
export function historyFromJSON(json: unknown): History {
  const history = fromJson(historyType, json, { ignoreUnknownFields: true }) as History | null;
  if (!history) throw new TypeError('not a workflow history');
  return history;
}
