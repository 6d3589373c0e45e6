/** The graph layer: symbolic tensors, ops with their gradients, compilation to ONNX. */
export * from "./compile.js";
export * from "./dtype.js";
export { type GradOptions, grad, topoSort, vjp } from "./grad.js";
export * from "./nn.js";
export * from "./ops/elementwise.js";
export * from "./ops/linalg.js";
export * from "./ops/reduce.js";
export * from "./ops/shape.js";
export {
  apply,
  constant,
  currentScope,
  input,
  type Leaf,
  type OpDef,
  scalar,
  Tensor,
  type WeightSource,
  weight,
  withScope,
} from "./tensor.js";
