export { Rng } from "../util/rng.js";
export {
  checkImage,
  checkPrompt,
  type DetectedObject,
  type ImageReading,
  type PromptCheck,
  type SymmetryAmplitudes,
} from "./checker.js";
export { deltaE, type Lab, rgbToLab } from "./color_space.js";
export {
  type ExpectedScene,
  editedWord,
  editPrompt,
  parsePrompt,
  promptWords,
  scenePrompt,
  type WordRole,
} from "./prompt.js";
export {
  dilateMask,
  editRegion,
  insideShape,
  objectMask,
  type RgbImage,
  renderScene,
  STAR_INNER_RADIUS,
} from "./render.js";
export {
  BACKGROUND_TONES,
  BACKGROUNDS,
  type Background,
  COLOR_RGB,
  COLORS,
  type Color,
  editScene,
  PATTERN_CELLS,
  type RandomSceneOptions,
  type Rgb,
  randomEdit,
  randomScene,
  type Scene,
  type SceneEdit,
  type SceneObject,
  SHAPES,
  type Shape,
  validateScene,
} from "./scene.js";
