import * as crypto from "node:crypto";

export const TICKET_LIFETIME_S = 2 * 3600;

function hex8(n: number): string {
  return n.toString(16).toUpperCase().padStart(8, "0");
}

/**
 * Issues and checks PVE tickets (`PVE:<user>:<hextime>::<sig>`) and CSRF
 * tokens (`<hextime>:<sig>`). PVE signs tickets with RSA; an HMAC is enough
 * here because only this process verifies them.
 */
export class Authority {
  private readonly secret = crypto.randomBytes(32);

  constructor(private readonly now: () => number) {}

  private sign(data: string): string {
    return crypto.createHmac("sha256", this.secret).update(data).digest("base64");
  }

  issueTicket(user: string): { ticket: string; csrf: string } {
    const time = hex8(Math.floor(this.now() / 1000));
    const plain = `PVE:${user}:${time}`;
    return { ticket: `${plain}::${this.sign(plain)}`, csrf: `${time}:${this.sign(`${time}:${user}`)}` };
  }

  /** The ticket's user if it is authentic and younger than two hours. */
  verifyTicket(ticket: string): string | undefined {
    const m = /^(PVE:([^:]+):([0-9A-F]{8}))::(.+)$/.exec(ticket);
    if (!m) return undefined;
    const expected = this.sign(m[1] as string);
    const given = m[4] as string;
    if (expected.length !== given.length || !crypto.timingSafeEqual(Buffer.from(expected), Buffer.from(given))) return undefined;
    const age = Math.floor(this.now() / 1000) - parseInt(m[3] as string, 16);
    if (age < -300 || age > TICKET_LIFETIME_S) return undefined;
    return m[2];
  }

  verifyCsrf(token: string, user: string): boolean {
    const m = /^([0-9A-F]{8}):(.+)$/.exec(token);
    if (!m) return false;
    const expected = this.sign(`${m[1]}:${user}`);
    const age = Math.floor(this.now() / 1000) - parseInt(m[1] as string, 16);
    return expected === m[2] && age <= TICKET_LIFETIME_S;
  }
}

/** pve-http-server's token header parse: `PVEAPIToken=USER@REALM!TOKENID=SECRET`, split at the last `=`. */
export function parseTokenHeader(header: string | undefined): { tokenId: string; secret: string } | undefined {
  if (!header) return undefined;
  const m = /(?:^|\s)PVEAPIToken(?:=| )([^;]*)/.exec(header);
  if (!m) return undefined;
  let value: string;
  try {
    value = decodeURIComponent(m[1] as string);
  } catch {
    return undefined;
  }
  const eq = value.lastIndexOf("=");
  if (eq < 0) return undefined;
  return { tokenId: value.slice(0, eq), secret: value.slice(eq + 1) };
}

export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const [k, ...rest] = part.trim().split("=");
    if (k === name) {
      try {
        return decodeURIComponent(rest.join("="));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}
