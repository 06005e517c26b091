import { setImmediate } from 'node:timers/promises';

/** What a filter looks at, of a poster: all a searcher keeps of it in memory. */
export interface FilterFields {
  key: number;
  year: number | null;
  genres: string[];
}

export interface SearchFilter {
  genre?: string;
  yearFrom?: number;
  yearTo?: number;
}

export function hasFilter(filter: SearchFilter): boolean {
  return filter.genre !== undefined || filter.yearFrom !== undefined || filter.yearTo !== undefined;
}

export function matches(poster: Omit<FilterFields, 'key'>, filter: SearchFilter): boolean {
  if (filter.genre && !poster.genres.includes(filter.genre)) return false;
  if (filter.yearFrom !== undefined && (poster.year === null || poster.year < filter.yearFrom)) return false;
  if (filter.yearTo !== undefined && (poster.year === null || poster.year > filter.yearTo)) return false;
  return true;
}

export interface Candidates {
  size: number;
  keys: () => Iterable<number>;
  all: boolean;
}

/**
 * The posters a searcher covers, by what filters look at (year and genres; the rest stays in
 * SQLite), with the keys of each genre and each year, so that a filter's matches can be counted
 * and listed without looking at every poster.
 */
export class PosterFilters {
  private readonly posters = new Map<number, Omit<FilterFields, 'key'>>();
  private readonly byGenre = new Map<string, Set<number>>();
  private readonly byYear = new Map<number, Set<number>>();
  /** One string per genre name: a million posters share a few dozen. */
  private readonly names = new Map<string, string>();

  constructor(posters: Iterable<FilterFields>) {
    for (const poster of posters) this.put(poster);
  }

  /**
   * Every poster `page` gives, a page at a time (page(after): the next posters after key `after`,
   * by key; none at the end), the thread free between pages: a server's, while it serves.
   */
  static async inPages(page: (after: number) => Promise<FilterFields[]>): Promise<PosterFilters> {
    const filters = new PosterFilters([]);
    for (let rows = await page(0); rows.length > 0; rows = await page(rows[rows.length - 1]!.key)) {
      for (const poster of rows) filters.put(poster);
      await setImmediate();
    }
    return filters;
  }

  get(key: number): Omit<FilterFields, 'key'> | undefined {
    return this.posters.get(key);
  }

  keys(): IterableIterator<number> {
    return this.posters.keys();
  }

  genres(): string[] {
    return [...this.byGenre.entries()].filter(([, keys]) => keys.size > 0).map(([genre]) => genre);
  }

  put(poster: FilterFields): void {
    this.remove(poster.key);
    const genres = poster.genres.map((g) => this.names.get(g) ?? (this.names.set(g, g), g));
    this.posters.set(poster.key, { year: poster.year, genres });
    this.index({ key: poster.key, year: poster.year, genres });
  }

  remove(key: number): void {
    const poster = this.posters.get(key);
    if (!poster) return;
    this.posters.delete(key);
    for (const genre of poster.genres) this.byGenre.get(genre)?.delete(key);
    if (poster.year !== null) this.byYear.get(poster.year)?.delete(key);
  }

  /**
   * The keys a filter's most selective part leaves, or null when the filter narrows nothing. Their
   * number bounds the matches from above; `all` says every one of them matches (the filter has no
   * other part), so that a caller need not look each up to check the rest.
   */
  candidates(filter: SearchFilter): Candidates | null {
    const options: Omit<Candidates, 'all'>[] = [];
    if (filter.genre !== undefined) {
      const keys = this.byGenre.get(filter.genre) ?? new Set<number>();
      options.push({ size: keys.size, keys: () => keys });
    }
    if (filter.yearFrom !== undefined || filter.yearTo !== undefined) {
      const from = filter.yearFrom ?? -Infinity;
      const to = filter.yearTo ?? Infinity;
      const years = [...this.byYear.entries()].filter(([year]) => year >= from && year <= to).map(([, keys]) => keys);
      options.push({ size: years.reduce((n, keys) => n + keys.size, 0), keys: () => years.flatMap((keys) => [...keys]) });
    }
    if (options.length === 0) return null;
    const best = options.reduce((best, option) => (option.size < best.size ? option : best));
    return { ...best, all: options.length === 1 };
  }

  private index(poster: FilterFields): void {
    for (const genre of poster.genres) {
      let keys = this.byGenre.get(genre);
      if (!keys) this.byGenre.set(genre, (keys = new Set()));
      keys.add(poster.key);
    }
    if (poster.year !== null) {
      let keys = this.byYear.get(poster.year);
      if (!keys) this.byYear.set(poster.year, (keys = new Set()));
      keys.add(poster.key);
    }
  }
}
