"""The front door of :func:`nlmeans.denoise`: NumPy arrays and Dask arrays.

In-memory arrays go to :func:`nlmeans._denoise.denoise_array`; Dask arrays to
:func:`nlmeans.bigdata.denoise_dask`, which denoises chunk by chunk with the
same kernels. Keeping the choice here lets ``bigdata`` build on ``_denoise``
without ``_denoise`` knowing about ``bigdata`` (no import cycle).
"""

from __future__ import annotations

from ._checks import check_flag
from ._denoise import denoise_array

__all__ = ["denoise"]


def denoise(
    image,
    *,
    h=None,
    sigma=None,
    patch_size=None,
    patch_distance=None,
    method="fast",
    channel_axis=None,
    color_space="auto",
    h_chroma=None,
    noise=None,
    threads=None,
    device="cpu",
    ensemble=False,
    return_params=False,
):
    """Denoise an image with non-local means.

    Every pixel becomes a weighted mean of the pixels of its search window,
    weighted by how much their surrounding patches look alike:
    ``w = exp(-max(d2 - 2 sigma**2, 0) / h**2)``, ``d2`` the mean squared
    difference between the two patches over patch pixels and channels.

    Parameters
    ----------
    image : ndarray
        2-D gray image, 2-D image with channels (see ``channel_axis``), or a
        3-D volume (optionally with channels). uint8, uint16, float32 or
        float64; integers are read on a [0, 1] scale like
        :func:`skimage.util.img_as_float`.
    h : float, optional
        Filtering strength on the image's float scale: the same ``h`` as
        :func:`skimage.restoration.denoise_nl_means`. Automatic when None.
    sigma : float, optional
        Noise standard deviation on the image's float scale, subtracted in
        the weights. Estimated when None (see ``noise``).
    patch_size : int, optional
        Odd width of the (square or cubic) patches. Automatic when None (the
        table's, or the largest odd width an image narrower than that holds).
    patch_distance : int, optional
        Search radius: the window is ``2 * patch_distance + 1`` pixels wide
        per axis, clipped at the image border. Automatic when None.
    method : {"fast", "exact", "patchwise", "neural"}
        ``"fast"``: pixel-wise NLM with uniform patch weights and box-sum
        distances. ``"exact"``: Buades et al. (2005) pixel-wise NLM with
        Gaussian patch weights. ``"patchwise"``: IPOL 2011 patch-wise NLM.
        ``"neural"``: the shipped non-local network (:mod:`nlmeans.neural`;
        imports torch). A 3-channel image with one or two exactly constant
        channels goes to the gray model channel by channel (the colour
        model never saw an empty channel: +0.75 dB measured, see the README).
    channel_axis : int or None
        Axis holding the channels. Channels share one weight.
    color_space : {"auto", "rgb", "opponent"}
        How the channels are compared. ``"rgb"``: as given, the patch
        distance averaged over all channels. ``"opponent"`` (3 channels
        only): the image is turned into one luminance and two chrominance
        channels by an orthonormal transform (colour BM3D's); the luminance
        is averaged with weights from luminance patches alone and ``h``, the
        chrominance with weights from whole-colour patches and ``h_chroma``,
        and the result is turned back. ``"auto"``: ``"opponent"`` for 3 channels,
        ``"rgb"`` otherwise (measured: opponent is better on colour
        photographs, see the README's colour table).
    h_chroma : float, optional
        Filtering strength of the chrominance channels on the opponent path.
        Automatic when None: the fitted multiple of ``h``.
    noise : {None, "gaussian", "white", "poisson-gaussian", "auto"} or NoiseModel
        The noise model. None or ``"gaussian"``: additive Gaussian noise of
        standard deviation ``sigma``; an estimated ``sigma`` comes from
        :func:`nlmeans.estimate_noise_level`, which reads spatially
        correlated noise (demosaicked, JPEG-compressed camera photographs)
        at a coarser scale than white noise; except that with
        ``method="neural"``, None and no ``sigma`` let the network's noise
        map follow a Poisson-Gaussian fit when ``"auto"`` finds one (its map
        is only as good as the noise model), where ``"gaussian"`` keeps one
        sigma. ``"white"``: white Gaussian
        noise, ``sigma`` estimated at the finest scale only
        (:func:`nlmeans.estimate_sigma`; what None did before correlated
        noise was detected). ``"poisson-gaussian"``:
        variance ``a * y + b`` growing with the clean intensity ``y``, with
        ``a`` and ``b`` estimated per channel by
        :func:`nlmeans.noise.estimate_noise`; ``"auto"``: that estimate's
        choice between the two (Gaussian when the noise is correlated). A :class:`nlmeans.noise.NoiseModel` gives the
        model. Signal-dependent noise is stabilised to unit variance by the
        generalized Anscombe transform, denoised as Gaussian noise (every
        method, colour included) and mapped back by the exact unbiased
        inverse; ``h`` and ``h_chroma`` then apply to the stabilised image
        rescaled to [0, 1], and ``sigma`` must not be given. A Gaussian
        model (``a = 0``) with a different ``b`` per channel: the network
        takes it as a per-channel sigma map; the classical methods use one
        sigma, ``sqrt(mean(b))``. Dividing each channel by its own sigma
        instead lost 1.1 to 1.8 dB where the sigmas differ most (0.02 /
        0.08 / 0.15) and gained at most 0.4 dB (``patchwise``) on milder
        mixes (``benchmarks/per_channel_sigma.py``).
    threads : int, optional
        Number of threads, for the kernels and for the network (by default
        the calling thread's Numba setting, ``numba.get_num_threads()``:
        all cores unless lowered with ``numba.set_num_threads``). The classical methods
        give a bit-identical result for any value; the network (torch's
        CPU kernels) agrees to float32 rounding (about 1e-7).
    device : {"cpu", "cuda", "auto"}
        Where to compute. ``"cuda"``: the classical methods on CUDA kernels
        (numba-cuda: ``pip install "nlmeans[cuda]"``), equal to the CPU's
        result to float32 rounding (1e-5 on the [0, 1] scale), and the network
        with torch on the GPU, in tiles sized to the free GPU memory.
        ``"auto"``: the GPU when one is usable, else the CPU; the choice is
        ``device`` of the returned :class:`NLMeansParameters`. ``"cuda"``
        where no GPU can be used raises
        :class:`nlmeans.device.CUDAUnavailableError` (a ``ValueError``)
        saying what is missing.
    ensemble : bool
        ``method="neural"`` only: average the network's outputs over the 8
        flips and rotations of the image (the geometric self-ensemble), at 8
        times the time. Measured on McMaster with the colour model: +0.17 to
        +0.26 dB (README, "The colour denoiser"). The classical methods are
        invariant to flips and rotations already (``ValueError``).
    return_params : bool
        Also return the :class:`NLMeansParameters` used.

    Returns
    -------
    ndarray or (ndarray, NLMeansParameters)
        The denoised image, with the input's shape and dtype (integers
        rounded and clipped).

    Raises
    ------
    TypeError, ValueError
        For an unsupported dtype or type, NaN/Inf, an empty image, a wrong
        ``channel_axis``, an even or non-positive ``patch_size``, a negative
        ``patch_distance``, a non-positive ``h``, a negative ``sigma``, or an
        image smaller than a patch, each naming the parameter.

    Notes
    -----
    Weights and sums are computed in float32 on the image rescaled to [0, 1];
    the kernels return each pixel's correction (weighted mean minus the
    pixel), which is added to the input in float64, so that a pixel that is
    not averaged (``h`` tending to 0) comes back at its own precision. Every
    method's result is clipped to the input's [min, max], which a weighted
    mean can only leave by rounding (the network, by overshoot).

    An orthonormal colour transform alone would change nothing: joint
    distances and weighted means are invariant under it. What the opponent
    path gains comes from what the transform makes possible, as in colour
    BM3D (grouping on luminance) and OpenCV (a separate ``h`` for
    chrominance): luminance distances free of the chrominance channels'
    noise, and stronger smoothing of the chrominance, which holds little
    detail.
    White noise keeps its ``sigma`` in every transformed channel.

    Patches at the border use reflect padding (NumPy ``mode="reflect"``);
    candidate pixels are restricted to the image. The centre pixel weighs 1
    in ``"fast"`` and ``"exact"``; in ``"patchwise"`` it weighs the largest
    of the other weights (IPOL 2011).

    Deliberate differences from :func:`skimage.restoration.denoise_nl_means`:

    * ``"fast"`` compares full ``s x s`` patches; scikit-image's fast mode
      sums over ``(s - 1) x (s - 1)`` pixels while dividing by ``s**2``, so
      its distances are ``((s-1)/s)**2`` of ours for the same ``h``.
    * scikit-image's fast mode approximates ``exp`` (Schraudolph, about 3 %
      error) and drops pairs whose distance exceeds ``5 h**2``; ours is
      accurate to 2e-6 and drops only weights below ``exp(-30)``.
    * scikit-image's slow mode stops accumulating a patch distance once it
      exceeds a cut-off and searches a window clipped differently near the
      border; ``"exact"`` always computes the full Gaussian-weighted distance.

    References
    ----------
    .. [1] A. Buades, B. Coll, J.-M. Morel, "A non-local algorithm for image
       denoising", CVPR 2005.
    .. [2] A. Buades, B. Coll, J.-M. Morel, "Non-Local Means Denoising",
       Image Processing On Line 1 (2011), doi:10.5201/ipol.2011.bcm_nlm.
    .. [3] J. Darbon, A. Cunha, T. F. Chan, S. Osher, G. J. Jensen, "Fast
       nonlocal filtering applied to electron cryomicroscopy", ISBI 2008.
    .. [4] K. Dabov, A. Foi, V. Katkovnik, K. Egiazarian, "Color image
       denoising via sparse 3D collaborative filtering with grouping
       constraint in luminance-chrominance space", ICIP 2007.

    Examples
    --------
    >>> import numpy as np, nlmeans
    >>> rng = np.random.default_rng(0)
    >>> noisy = np.clip(0.5 + 0.1 * rng.standard_normal((64, 64)), 0, 1)
    >>> out, params = nlmeans.denoise(noisy, return_params=True)
    >>> out.shape, out.dtype, params.method
    ((64, 64), dtype('float64'), 'fast')
    """
    options = dict(
        h=h,
        sigma=sigma,
        patch_size=patch_size,
        patch_distance=patch_distance,
        method=method,
        channel_axis=channel_axis,
        color_space=color_space,
        h_chroma=h_chroma,
        noise=noise,
        threads=threads,
        ensemble=ensemble,
        return_params=check_flag("return_params", return_params),
    )
    if _is_dask_array(image):
        # Images larger than memory: the same parameters, denoised chunk by
        # chunk (nlmeans.bigdata; needs the "dask" extra).
        from .bigdata import denoise_dask

        if device == "cuda":
            # The CUDA kernels take whole images; "auto" runs Dask chunks on the CPU.
            raise ValueError("device='cuda' does not take Dask arrays yet: use device='cpu'")
        return denoise_dask(image, **options)
    return denoise_array(image, **options, device=device)


def _is_dask_array(image) -> bool:
    """A ``dask.array.Array``, recognised without importing Dask."""
    return type(image).__module__.split(".")[0] == "dask" and hasattr(image, "chunks")
