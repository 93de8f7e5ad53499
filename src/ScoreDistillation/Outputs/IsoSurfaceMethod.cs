namespace ScoreDistillation.Outputs;

/// <summary>How <see cref="IsoSurface.Extract"/> polygonises a grid.</summary>
public enum IsoSurfaceMethod
{
    /// <summary>
    /// Marching cubes (Lorensen &amp; Cline) with the classic 256-case tables: at most five triangles per cube; ambiguous
    /// faces are resolved consistently (outside connected across the face), so the surface is crack-free.
    /// </summary>
    MarchingCubes,

    /// <summary>
    /// Marching tetrahedra: six tetrahedra per cube around its main diagonal (a conforming split, crack-free, no
    /// ambiguous cases); somewhat more triangles than marching cubes.
    /// </summary>
    MarchingTetrahedra,
}
