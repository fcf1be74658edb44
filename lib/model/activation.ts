/** The FF nonlinearities by their config names (the native forward pass computes them: native/core/nn). */
export type Activation = 'gelu_new' | 'gelu' | 'relu' | 'silu' | 'swish';
