//! Export: a base plus adapter merged into a Hugging Face folder, a GGUF file for llama.cpp
//! and Ollama, or the adapter alone as a llama.cpp LoRA GGUF.
