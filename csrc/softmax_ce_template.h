/* Fused softmax + cross-entropy for one dtype, rows [r0, r1) of a ranvier_ce_args problem.
 * Included by elementwise_impl.h (once per ISA translation unit) with:
 *   CE_T    float or double
 *   CE_P    name maker for this dtype's row primitives (softmax_ce_rows.h): CE_P(ce_row_max)
 *   CE_FN   name maker for this dtype's static functions
 *
 * Per row, three passes over data that stays in L1/L2 (a 4096-class row is 16 KiB):
 *   1. m = max_j z_j (for rows after the first, during the previous row's pass 2);
 *   2. g_j = exp(z_j - m) and s = sum_j g_j, summed in double;
 *   3. the variant's finish: loss from log(s) in double, g = (p - u) * scale with p = g / s.
 * The sum is in double because its error becomes the loss's absolute error: float lanes would
 * cost ~(d / lanes) * eps_f (4e-6 for 1000 classes), a double sum of the float terms ~d * 1e-16,
 * so the loss keeps the float-input bound eps_f * (1 + |z - m|) for any d. Each row is computed
 * by one thread alone, so results do not depend on the thread count.
 *
 * Pass 2 alone (exp, sum, the next row's max, unnormalised g written once) runs at np.copyto's
 * speed on a 4096 x 4096 float32 problem; pass 3's rescale of the cached row, which must wait
 * for the row's sum, brings the whole to ~2/3 of it on the 2-core Zen 4 this was tuned on. A
 * scratch row, a rescale fused into the next row's loop, prefetching and non-temporal stores all
 * measured slower. */

/* Is `label` the first index of the row max (the argmax numpy and torch report)? */
static inline signed char CE_FN(first_max_is)(const CE_T *z, CE_T m, int64_t label)
{
    if (!(z[label] == m)) return 0;
    for (int64_t j = 0; j < label; ++j)
        if (z[j] == m) return 0;
    return 1;
}

/* Integer label, no weights or smoothing: the training hot path. p = e * (scale / s) in the
 * working precision (one rounding of the factor, one of the product: within the bound
 * eps * (r + 2) * p of the exponent's own rounding); the label entry, where p - 1 cancels, in
 * double. */
static inline double CE_FN(finish_label)(const CE_T *z, CE_T m, CE_T *restrict g, ptrdiff_t d,
                                         double s, int64_t label, double scale)
{
    const double c = scale / s;
    const CE_T e_label = g[label];
    CE_P(ce_scale)(g, (CE_T)c, d);
    g[label] = (CE_T)((double)e_label * c - scale);
    return log(s) - ((double)z[label] - (double)m);
}

/* Integer label with class weights w (NULL: all 1, wsum = d) and label smoothing: effective
 * target u_j = w_j (eps_c + keep [j == label]); loss = -sum u_j log p_j
 * = eps_c (wsum lse - sum_j w_j (z_j - m)) + keep w_label (lse - (z_label - m)), every term
 * >= 0 (no cancellation); g_j = scale (p_j sum(u) - u_j). */
static inline double CE_FN(finish_label_ext)(const ranvier_ce_args *a, const CE_T *restrict z,
                                             CE_T m, CE_T *restrict g, ptrdiff_t d, double s,
                                             int64_t label)
{
    const double *w = a->w, lse = log(s), md = (double)m, eps_c = a->eps_c, keep = a->keep;
    const double wl = w == NULL ? 1.0 : w[label];
    const double c = a->scale * (eps_c * a->wsum + keep * wl) / s, se = a->scale * eps_c;
    const double e_label = (double)g[label];
    double wz = 0.0;
    if (w == NULL) {
#pragma omp simd reduction(+ : wz)
        for (ptrdiff_t j = 0; j < d; ++j) {
            wz += (double)z[j] - md;
            g[j] = (CE_T)((double)g[j] * c - se);
        }
    } else {
#pragma omp simd reduction(+ : wz)
        for (ptrdiff_t j = 0; j < d; ++j) {
            wz += w[j] * ((double)z[j] - md);
            g[j] = (CE_T)((double)g[j] * c - se * w[j]);
        }
    }
    g[label] = (CE_T)(e_label * c - a->scale * (eps_c + keep) * wl);
    return eps_c * (a->wsum * lse - wz) + keep * wl * (lse - ((double)z[label] - md));
}

/* Probability targets t (need not sum to one) with optional weights and smoothing:
 * u_j = w_j ((1 - eps) t_j + eps / C) (u = t for the plain loss: keep = 1, eps_c = 0, w NULL);
 * loss = sum(u) lse - sum_j u_j (z_j - m); g_j = scale (p_j sum(u) - u_j). All in double. */
static inline double CE_FN(finish_probs)(const ranvier_ce_args *a, const CE_T *restrict z,
                                         const CE_T *restrict t, CE_T m, CE_T *restrict g,
                                         ptrdiff_t d, double s)
{
    const double *w = a->w, md = (double)m, eps_c = a->eps_c, keep = a->keep;
    double usum = 0.0, uz = 0.0;
#pragma omp simd reduction(+ : usum, uz)
    for (ptrdiff_t j = 0; j < d; ++j) {
        const double u = (keep * (double)t[j] + eps_c) * (w == NULL ? 1.0 : w[j]);
        usum += u;
        uz += u * ((double)z[j] - md);
    }
    const double c = a->scale * usum / s, sc = a->scale;
#pragma omp simd
    for (ptrdiff_t j = 0; j < d; ++j) {
        const double u = (keep * (double)t[j] + eps_c) * (w == NULL ? 1.0 : w[j]);
        g[j] = (CE_T)((double)g[j] * c - sc * u);
    }
    return usum * log(s) - uz;
}

static void CE_FN(softmax_ce)(const ranvier_ce_args *a, ptrdiff_t r0, ptrdiff_t r1)
{
    const ptrdiff_t d = a->d;
    if (r0 >= r1) return;
    CE_T m = CE_P(ce_row_max)((const CE_T *)a->z + r0 * d, d), m_next;
    for (ptrdiff_t i = r0; i < r1; ++i) {
        const CE_T *z = (const CE_T *)a->z + i * d;
        CE_T *g = (CE_T *)a->g + i * d;
        const double s = CE_P(ce_row_exp_sum)(z, m, g, d, i + 1 < r1 ? z + d : z, &m_next);
        if (a->t != NULL) {
            a->row_loss[i] = CE_FN(finish_probs)(a, z, (const CE_T *)a->t + i * d, m, g, d, s);
        } else {
            const int64_t label = a->labels[i];
            if (a->hit != NULL) a->hit[i] = CE_FN(first_max_is)(z, m, label);
            a->row_loss[i] = a->plain ? CE_FN(finish_label)(z, m, g, d, s, label, a->scale)
                                      : CE_FN(finish_label_ext)(a, z, m, g, d, s, label);
        }
        m = m_next;
    }
}
