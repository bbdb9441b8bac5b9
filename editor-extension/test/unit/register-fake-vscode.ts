// Makes `require("vscode")` return the fake host API (node --require this file).
import Module from "node:module";
import { vscodeModule } from "./fake-vscode";

const M = Module as unknown as { _load: (request: string, ...rest: unknown[]) => unknown };
const load = M._load;
M._load = function (request: string, ...rest: unknown[]) {
  if (request === "vscode") return vscodeModule;
  return load.call(this, request, ...rest);
};

// vscode-languageclient 10 calls `void this.stop()` when initialize fails, which rejects while the
// client is still "starting", and a dying server leaves "Pending response rejected" errors behind.
// VS Code's extension host only logs such stray errors; so does this host (instead of failing).
const HOST_LOGGED =
  /Client is not running and can't be stopped|Pending response rejected since connection got disposed/;
const emit = process.emit.bind(process) as (event: string, ...args: unknown[]) => boolean;
(process as unknown as { emit: typeof emit }).emit = (event: string, ...args: unknown[]): boolean => {
  const reason = args[0];
  if (
    (event === "unhandledRejection" || event === "uncaughtException") &&
    reason instanceof Error &&
    HOST_LOGGED.test(reason.message)
  ) {
    return true;
  }
  return emit(event, ...args);
};
