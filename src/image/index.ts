export { encodePng, readImage, writePng } from "./io.js";
export { maskedPsnr, mse, type PixelMask, psnr, ssim } from "./metrics.js";
export { crop, type FitMode, fitToSquare, resizeBicubic } from "./resize.js";
export { checkRgbImage, fromTensor, grid, type RgbImage, toTensor } from "./rgb_image.js";
