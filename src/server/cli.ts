/** `nulltext serve`: loads the model, starts the web app and prints the URL to open; stops on SIGINT/SIGTERM. */
import path from "node:path";
import { NullTextPipeline, type PipelineOptions } from "../pipeline.js";
import { startServer } from "./app.js";

export interface ServeOptions {
  model: string;
  pipeline?: PipelineOptions;
  port?: number;
  host?: string;
  data?: string;
  token?: string;
}

export async function serve(o: ServeOptions): Promise<void> {
  const host = o.host ?? "127.0.0.1";
  const pipe = await NullTextPipeline.load(o.model, o.pipeline);
  const data = path.resolve(o.data ?? "nulltext-data");
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer({ pipe, data, host, port: o.port ?? 7860, token: o.token });
  } catch (err) {
    await pipe.release();
    throw err;
  }
  console.log(`nulltext serve: ${pipe.model.source} at ${pipe.resolution}×${pipe.resolution}; data in ${data}`);
  console.log(`open ${server.openUrl}`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  console.log("stopping (a running job is queued again at the next start)");
  await server.close();
  await pipe.release();
}
