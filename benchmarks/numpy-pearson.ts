/**
 * The numpy peer of the correlation benchmarks (benchmarks/correlation.ts, correlation-llm.ts): random
 * float32 X, Y [N, d] and Pearson cross-correlation the way a numpy user writes it (centre, Xᵀ·Y, divide by
 * the norms, 0 where a norm is 0). Python source for a script that defines N and d before it.
 */
export const NUMPY_PEARSON = `rng = np.random.default_rng(0)
X = rng.standard_normal((N, d), dtype=np.float32)
Y = rng.standard_normal((N, d), dtype=np.float32)
def corr(X, Y):
    Xc = X - X.mean(axis=0, dtype=np.float32)
    Yc = Y - Y.mean(axis=0, dtype=np.float32)
    C = Xc.T @ Yc
    sx = np.sqrt(np.einsum('ij,ij->j', Xc, Xc))
    sy = np.sqrt(np.einsum('ij,ij->j', Yc, Yc))
    with np.errstate(divide='ignore', invalid='ignore'):
        R = C / np.outer(sx, sy)
    R[~np.isfinite(R)] = 0
    return R
`;
