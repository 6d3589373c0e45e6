/**
 * Jobs: invert, edit, reconstruct and generate as library calls that every front end (CLI, server,
 * browser page, batch worker) uses. Each takes an AbortSignal, reports typed progress, writes its
 * outputs atomically and returns a report object.
 */
export {
  type EditJob,
  type EditReport,
  type EditResult,
  editJob,
  type GenerateJob,
  generateJob,
  type ReconstructJob,
  reconstructJob,
} from "./edit.js";
export {
  type InvertJob,
  type InvertReport,
  invertJob,
  quality,
  type ReconstructionQuality,
  resumeMismatch,
} from "./invert.js";
export {
  checkOutputs,
  editOutputs,
  inversionSidecars,
  lockOutput,
  OutputBusyError,
  OutputError,
  type OutputLock,
  withOutputs,
  writeJsonOutput,
  writeOutput,
  writePngOutput,
} from "./outputs.js";
export { type JobKind, type JobProgress, ProgressClock, type ProgressListener } from "./progress.js";
export { fileResumeStore, type ResumeStore } from "./resume.js";
