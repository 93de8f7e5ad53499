using TorchSharp;
using static TorchSharp.torch;

namespace ScoreDistillation.Diffusion.BuiltIn;

/// <summary>
/// Signed distance functions and colours of the world's objects, evaluated with tensor ops on any device. Sphere, cube,
/// cylinder, torus and capsule are exact distances; cone, pyramid, octahedron and prism are exact on their faces and a
/// lower bound elsewhere (intersections of half-spaces), which keeps the sign exact and the Lipschitz constant 1.
/// </summary>
public static class AnalyticShapes
{
    /// <summary>Direction towards the light of the baked diffuse shading (world, unit): front-right, above.</summary>
    public static readonly (double X, double Y, double Z) LightDirection = Normalize(0.6, 0.35, 0.72);

    /// <summary>Ambient term of the baked shading: colour = albedo·(ambient + (1 − ambient)·max(0, n·l)).</summary>
    public const double Ambient = 0.45;

    /// <summary>Signed distance [..., 1] of <paramref name="obj"/> at points [..., 3] (negative inside).</summary>
    public static Tensor SignedDistance(WorldObject obj, Tensor points)
    {
        ArgumentNullException.ThrowIfNull(obj);
        ArgumentNullException.ThrowIfNull(points);
        if (points.shape[^1] != 3) throw new ArgumentException($"Points must end in 3 coordinates, got [{string.Join(", ", points.shape)}].", nameof(points));
        using var scope = NewDisposeScope();
        double s = obj.Size;
        var x = points.select(-1, 0);
        var y = points.select(-1, 1);
        var z = points.select(-1, 2);
        Tensor d = obj.Shape switch
        {
            WorldShape.Sphere => points.norm(-1, false) - s,
            WorldShape.Cube => Box(points, 0.75 * s),
            WorldShape.Cylinder => Cylinder(x, y, z, 0.72 * s, 0.85 * s),
            WorldShape.Cone => Cone(x, y, z, 0.8 * s, -0.75 * s, 0.95 * s),
            WorldShape.Torus => Torus(x, y, z, 0.64 * s, 0.32 * s),
            WorldShape.Capsule => Capsule(x, y, z, 0.55 * s, 0.45 * s),
            WorldShape.Octahedron => (x.abs() + y.abs() + z.abs() - s) * (1 / Math.Sqrt(3)),
            WorldShape.Pyramid => Pyramid(x, y, z, 0.8 * s, -0.7 * s, 0.9 * s),
            WorldShape.Prism => Prism(x, y, z, 0.9 * s, 0.8 * s),
            _ => throw new ArgumentOutOfRangeException(nameof(obj), obj.Shape, "Unknown shape."),
        };
        return d.unsqueeze(-1).MoveToOuterDisposeScope();
    }

    /// <summary>Albedo [..., 3] in [0, 1] at points [..., 3] (the accent colour on the accent side of two-tone objects).</summary>
    public static Tensor Albedo(WorldObject obj, Tensor points)
    {
        ArgumentNullException.ThrowIfNull(obj);
        ArgumentNullException.ThrowIfNull(points);
        using var scope = NewDisposeScope();
        var body = Rgb(obj.Colour, points);
        if (!obj.IsTwoTone) return body.expand(points.shape).contiguous().MoveToOuterDisposeScope();
        var accent = Rgb(obj.AccentColour!, points);
        var mask = AccentMask(obj, points).unsqueeze(-1);
        return where(mask, accent, body).MoveToOuterDisposeScope();
    }

    /// <summary>True [...] where a point lies on the accent side of a two-tone object (a cap beyond 0.3·size).</summary>
    public static Tensor AccentMask(WorldObject obj, Tensor points)
    {
        ArgumentNullException.ThrowIfNull(obj);
        ArgumentNullException.ThrowIfNull(points);
        if (!obj.IsTwoTone) return zeros(points.shape[..^1], ScalarType.Bool, points.device);
        using var scope = NewDisposeScope();
        double c = 0.3 * obj.Size;
        var m = obj.Side switch
        {
            AccentSide.Front => points.select(-1, 0) > c,
            AccentSide.Back => points.select(-1, 0) < -c,
            AccentSide.Top => points.select(-1, 2) > c,
            _ => throw new ArgumentOutOfRangeException(nameof(obj), obj.Side, "Unknown side."),
        };
        return m.MoveToOuterDisposeScope();
    }

    /// <summary>Outward unit normal [..., 3] from central differences of the signed distance.</summary>
    public static Tensor Normal(WorldObject obj, Tensor points, double h = 1e-3)
    {
        ArgumentNullException.ThrowIfNull(obj);
        ArgumentNullException.ThrowIfNull(points);
        using var scope = NewDisposeScope();
        var grads = new Tensor[3];
        for (int k = 0; k < 3; k++)
        {
            var e = Offset(k, h, points);
            grads[k] = (SignedDistance(obj, points + e) - SignedDistance(obj, points - e)).squeeze(-1);
        }
        return nn.functional.normalize(stack(grads, -1), p: 2, dim: -1, eps: 1e-12).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The object's colour [..., 3] in [0, 1]: albedo with baked diffuse shading from <see cref="LightDirection"/>. The
    /// shading normal uses forward differences (three extra distance evaluations; rendering cost is dominated by this).
    /// </summary>
    public static Tensor ShadedColour(WorldObject obj, Tensor points)
    {
        ArgumentNullException.ThrowIfNull(obj);
        ArgumentNullException.ThrowIfNull(points);
        using var scope = NewDisposeScope();
        const double h = 1e-3;
        var d0 = SignedDistance(obj, points).squeeze(-1);
        var grads = new Tensor[3];
        for (int k = 0; k < 3; k++) grads[k] = SignedDistance(obj, points + Offset(k, h, points)).squeeze(-1) - d0;
        var n = nn.functional.normalize(stack(grads, -1), p: 2, dim: -1, eps: 1e-12);
        var l = tensor(new[] { LightDirection.X, LightDirection.Y, LightDirection.Z }, points.dtype, points.device);
        var lambert = (n * l).sum(-1, keepdim: true).clamp_min(0);
        var shade = Ambient + (1 - Ambient) * lambert;
        return (Albedo(obj, points) * shade).MoveToOuterDisposeScope();
    }

    static Tensor Offset(int axis, double h, Tensor like)
    {
        var e = new double[3];
        e[axis] = h;
        return tensor(e, like.dtype, like.device);
    }

    /// <summary>
    /// Points [n, 3] on the surface of <paramref name="obj"/>: random points in the bounding sphere projected onto the
    /// zero level set by Newton steps p ← p − f(p)·∇f(p). Deterministic under <paramref name="generator"/>.
    /// </summary>
    public static Tensor SurfacePoints(WorldObject obj, int count, Generator? generator = null, Device? device = null, ScalarType dtype = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(obj);
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count));
        using var scope = NewDisposeScope();
        var p = (rand(new long[] { count, 3 }, dtype, device, generator: generator) * 2 - 1) * (1.2 * obj.Size);
        for (int i = 0; i < 24; i++)
        {
            var f = SignedDistance(obj, p);
            p = p - f * Normal(obj, p);
        }
        return p.MoveToOuterDisposeScope();
    }

    static Tensor Rgb(string colour, Tensor like)
    {
        var (r, g, b) = WorldVocabulary.Albedo(colour);
        return tensor(new[] { r, g, b }, like.dtype, like.device);
    }

    static Tensor Box(Tensor p, double h)
    {
        var q = p.abs() - h;
        var outside = q.clamp_min(0).norm(-1, false);
        var inside = q.amax(new long[] { -1 }, false).clamp_max(0);
        return outside + inside;
    }

    static Tensor Cylinder(Tensor x, Tensor y, Tensor z, double r, double h)
    {
        var dx = (x * x + y * y).sqrt() - r;
        var dz = z.abs() - h;
        var outside = (dx.clamp_min(0).square() + dz.clamp_min(0).square()).sqrt();
        var inside = maximum(dx, dz).clamp_max(0);
        return outside + inside;
    }

    // Apex up: base radius r at z = zb, apex at z = za.
    static Tensor Cone(Tensor x, Tensor y, Tensor z, double r, double zb, double za)
    {
        double h = za - zb, len = Math.Sqrt(h * h + r * r);
        var q = (x * x + y * y).sqrt();
        var side = (q * h + (z - za) * r) / len;
        return maximum(side, zb - z);
    }

    static Tensor Torus(Tensor x, Tensor y, Tensor z, double major, double minor)
    {
        var q = (x * x + y * y).sqrt() - major;
        return (q * q + z * z).sqrt() - minor;
    }

    static Tensor Capsule(Tensor x, Tensor y, Tensor z, double halfLength, double r)
    {
        var zc = z - z.clamp(-halfLength, halfLength);
        return (x * x + y * y + zc * zc).sqrt() - r;
    }

    // Square base of half-width b at z = zb, apex at z = za.
    static Tensor Pyramid(Tensor x, Tensor y, Tensor z, double b, double zb, double za)
    {
        double h = za - zb, len = Math.Sqrt(h * h + b * b);
        var sx = (x.abs() * h + (z - za) * b) / len;
        var sy = (y.abs() * h + (z - za) * b) / len;
        return maximum(maximum(sx, sy), zb - z);
    }

    // Equilateral triangle of circumradius rc in the xy-plane (one vertex towards +x), half-height h.
    static Tensor Prism(Tensor x, Tensor y, Tensor z, double rc, double h)
    {
        double inradius = rc / 2;
        Tensor? d = null;
        for (int k = 0; k < 3; k++)
        {
            double a = Math.PI + k * 2 * Math.PI / 3;
            var plane = x * Math.Cos(a) + y * Math.Sin(a) - inradius;
            d = d is null ? plane : maximum(d, plane);
        }
        return maximum(d!, z.abs() - h);
    }

    static (double, double, double) Normalize(double x, double y, double z)
    {
        double n = Math.Sqrt(x * x + y * y + z * z);
        return (x / n, y / n, z / n);
    }
}
