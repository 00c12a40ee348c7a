/**
 * Bringing Hugging Face checkpoints and PEFT adapters into GGUF without Python: readers for
 * safetensors, PyTorch zip checkpoints (with a pickle reader that never executes anything) and
 * SentencePiece models; `convertHfModel`, `convertPeftLora`, `mergeLora` and `quantizeModel`.
 *
 * @module
 */
export { ConvertError } from "./errors.js";
export { convertHfModel, readLlamaConfig, type ConvertModelOptions, type ConvertModelResult, type LlamaHparams, type ModelOutType } from "./model.js";
export { convertPeftLora, readPeftConfig, PEFT_TO_GGUF, type ConvertLoraOptions, type ConvertLoraResult, type PeftLoraConfig } from "./lora.js";
export { MERGED_KEY, mergeLora, type MergeAdapter, type MergeOptions, type MergeOutType, type MergeResult } from "./merge.js";
export { quantizationTypes, quantizeModel, type QuantizeOptions, type QuantizeResult } from "./quantize.js";
export { openModelWeights, openWeightFile, type CheckpointWeights } from "./checkpoint.js";
export { encodeSafetensors, openSafetensors, writeSafetensors, type SafetensorsEntry, type SafetensorsFile } from "./safetensors.js";
export { encodeTorchCheckpoint, openTorchCheckpoint, writeTorchCheckpoint, type TorchCheckpoint, type TorchTensorEntry, type TorchWriteOptions } from "./torch.js";
export { PickleBuilder, PickleError, PyDict, PyGlobal, PyTuple, unpickle, type PyKey, type UnpickleOptions } from "./pickle.js";
export { encodeZip, openZip, readZipEntry, type ZipArchive, type ZipEntry, type ZipWriteOptions } from "./zip.js";
export { encodeSentencePieceModel, parseSentencePieceModel, SentencePieceType, type SentencePieceModel } from "./sentencepiece.js";
export { loadHfTokenizer, type GgufVocab } from "./tokenizer.js";
export { permuteQkRows } from "./permute.js";
export { bytesToF32, DTYPE_BYTES, numel, readTensorAsF32, type FloatDType, type SourceTensor } from "./tensor.js";
