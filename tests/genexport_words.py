"""The closed sets and vocabularies tests/genexport.py draws GenAptitude-like rows from (data only): Arcadia layers
and their labels, domains, statuses, element kinds, and the words names are made of."""
from __future__ import annotations

# --------------------------------------------------------------------------- closed sets

#: Arcadia layer code -> French label. Exported elements carry it as `layerName` (as Capella exports do), and the
#: empty-input questions name it, so every answer slot can be read off the row: a fine-tune is seen to learn.
LAYER_LABELS: dict[str, str] = {
    "OA": "analyse opérationnelle",
    "SA": "analyse système",
    "LA": "architecture logique",
    "PA": "architecture physique",
    "EPBS": "structure de décomposition produit",
}

#: Fixed answers for the empty-input questions, one per layer code.
LAYER_ANSWERS: dict[str, str] = {
    code: f"Dans la méthode Arcadia, {code} désigne la couche « {label} »." for code, label in LAYER_LABELS.items()
}

INSTRUCTIONS: dict[str, str] = {
    "collection": "Analyser cet élément technique du domaine {domain}.",
    "criticality": "Évaluer la criticité de ce composant du domaine {domain}.",
    "allocation": "Identifier l'allocation de cette fonction du domaine {domain}.",
    "exchange": "Décrire cet échange du domaine {domain}.",
    "requirement": "Vérifier le statut de cette exigence du domaine {domain}.",
    "layer": "Quel est le rôle de la couche {code} ({label}) dans la méthode Arcadia ?",
}

TEMPLATES: dict[str, str] = {
    "collection": "L'entité appartient à la collection '{collection}' dans l'espace projet '{space}'.",
    "criticality": "Le composant '{name}' est de niveau de criticité {criticality} "
                   "et relève de la couche {layer_label} ({layer}).",
    "allocation": "La fonction '{name}' est allouée au composant '{parent}'.",
    "exchange": "L'échange '{name}' relie '{source}' à '{target}'.",
    "requirement": "L'exigence '{id}' est au statut '{status}'.",
}

DOMAINS = ["safety", "avionique", "ferroviaire", "spatial", "défense", "énergie"]
DOMAIN_SLUG = {"safety": "safety", "avionique": "avio", "ferroviaire": "ferro", "spatial": "spatial",
               "défense": "defense", "énergie": "energie"}
DOMAIN_CODE = {"safety": "SAF", "avionique": "AVI", "ferroviaire": "FER", "spatial": "SPA",
               "défense": "DEF", "énergie": "ENR"}
# Avionics and space use DO-178C/ECSS DAL; the others use IEC 61508/EN 50128 SIL.
USES_DAL = {"avionique", "spatial"}

STATUSES = ["brouillon", "en revue", "validée", "approuvée", "rejetée", "obsolète"]
ELEMENT_STATUSES = ["draft", "reviewed", "baselined", "frozen"]

# Component kinds with their natural layer (so the layer label is signalled twice: kind and code).
COMPONENT_KINDS = [
    ("OperationalActor", "OA"),
    ("OperationalEntity", "OA"),
    ("SystemComponent", "SA"),
    ("LogicalComponent", "LA"),
    ("PhysicalComponent", "PA"),
    ("PhysicalNode", "PA"),
    ("ConfigurationItem", "EPBS"),
]
FUNCTION_KINDS = [
    ("OperationalActivity", "OA", "OperationalActor"),
    ("SystemFunction", "SA", "SystemComponent"),
    ("LogicalFunction", "LA", "LogicalComponent"),
    ("PhysicalFunction", "PA", "PhysicalComponent"),
]
EXCHANGE_KINDS = [("ComponentExchange", "component"), ("FunctionalExchange", "function")]
OTHER_KINDS = [("Capability", "SA"), ("OperationalCapability", "OA"), ("Mission", "SA"),
               ("ExchangeItem", "LA"), ("PhysicalLink", "PA")]

# --------------------------------------------------------------------------- vocabularies

COMPONENTS: dict[str, list[str]] = {
    "safety": ["Contrôleur de freinage", "Moniteur de sécurité", "Module d'arrêt d'urgence",
               "Superviseur de redondance", "Détecteur de défaillance", "Chien de garde matériel",
               "Unité de surveillance thermique", "Gestionnaire de modes dégradés",
               "Capteur de vitesse roue", "Barrière de sécurité logicielle"],
    "avionique": ["Calculateur de navigation", "Centrale inertielle", "Calculateur de commandes de vol",
                  "Afficheur tête haute", "Radioaltimètre", "Concentrateur de données avion",
                  "Calculateur d'alerte de décrochage", "Récepteur GNSS", "Pilote automatique",
                  "Système de gestion de vol"],
    "ferroviaire": ["Calculateur de bord ETCS", "Balise Eurobalise", "Enclenchement électronique",
                    "Odomètre ferroviaire", "Contrôleur de portes", "Unité de traction",
                    "Module de freinage d'urgence", "Détecteur de boîte chaude",
                    "Poste d'aiguillage", "Interface conducteur DMI"],
    "spatial": ["Calculateur de bord", "Senseur stellaire", "Roue de réaction", "Magnétocoupleur",
                "Unité de gestion de puissance", "Transpondeur bande S", "Contrôleur d'attitude",
                "Enregistreur de télémesure", "Propulseur à ergols", "Gyromètre à fibre optique"],
    "défense": ["Radar de veille", "Calculateur de conduite de tir", "Liaison de données tactique",
                "Système de guerre électronique", "Console d'opérateur", "Désignateur laser",
                "Centrale de navigation hybride", "Module de chiffrement", "Détecteur d'alerte missile",
                "Calculateur de mission"],
    "énergie": ["Automate de protection", "Relais de protection différentielle", "Disjoncteur haute tension",
                "Superviseur SCADA", "Onduleur photovoltaïque", "Régulateur de tension",
                "Contrôleur de turbine", "Capteur de température cœur", "Unité de délestage",
                "Système de contrôle-commande"],
}
QUALIFIERS = ["principal", "secondaire", "redondant", "avant", "arrière", "gauche", "droit",
              "de secours", "embarqué", "sol", "bâbord", "tribord", "nord", "sud"]

FUNCTIONS: dict[str, list[str]] = {
    "safety": ["Surveiller la vitesse", "Déclencher l'arrêt d'urgence", "Détecter une perte de signal",
               "Passer en mode dégradé", "Contrôler la cohérence des capteurs", "Journaliser les alarmes"],
    "avionique": ["Calculer la position", "Estimer l'attitude", "Afficher les alarmes équipage",
                  "Élaborer les consignes de vol", "Acquérir l'altitude radio", "Gérer le plan de vol"],
    "ferroviaire": ["Calculer la courbe de freinage", "Lire la balise", "Commander l'ouverture des portes",
                    "Superviser la traction", "Vérifier l'itinéraire", "Mesurer la distance parcourue"],
    "spatial": ["Contrôler l'attitude", "Acquérir les étoiles", "Gérer la charge batterie",
                "Transmettre la télémesure", "Exécuter les télécommandes", "Désaturer les roues"],
    "défense": ["Détecter les pistes", "Classifier la menace", "Calculer la solution de tir",
                "Chiffrer les messages", "Diffuser la situation tactique", "Brouiller l'émetteur adverse"],
    "énergie": ["Surveiller le courant de ligne", "Isoler le défaut", "Réguler la tension",
                "Délester la charge", "Synchroniser le réseau", "Piloter la turbine"],
}
FUNC_SUFFIXES = ["en vol", "au sol", "en mode nominal", "en mode dégradé", "en redondance",
                 "à basse vitesse", "sur alarme", "en continu", "périodiquement", "à la demande"]

EXCHANGES: dict[str, list[str]] = {
    "safety": ["Signal d'arrêt", "Trame de surveillance", "Alarme de défaut", "Consigne de freinage"],
    "avionique": ["Bus ARINC 429", "Trame AFDX", "Données de cap", "Position GNSS"],
    "ferroviaire": ["Télégramme balise", "Autorisation de mouvement", "Bus MVB", "Ordre de portes"],
    "spatial": ["Bus MIL-STD-1553", "Paquet de télémesure", "Télécommande", "Lien SpaceWire"],
    "défense": ["Liaison 16", "Piste radar", "Ordre de tir", "Flux vidéo chiffré"],
    "énergie": ["Trame IEC 61850", "Mesure de courant", "Ordre de déclenchement", "Bus Modbus"],
}
COMMON_EXCHANGES = ["Bus CAN véhicule", "Lien Ethernet", "Alimentation 28 V", "Horloge de référence"]

REQ_SUBJECTS: dict[str, list[str]] = {
    "safety": ["Temps de réaction du freinage", "Détection des pannes latentes", "Redondance des capteurs",
               "Passage en état sûr"],
    "avionique": ["Précision de la position", "Disponibilité des commandes de vol", "Intégrité des alarmes",
                  "Ségrégation des partitions"],
    "ferroviaire": ["Distance d'arrêt", "Lecture des balises", "Verrouillage des portes",
                    "Surveillance de la vitesse"],
    "spatial": ["Précision de pointage", "Autonomie énergétique", "Tenue aux radiations",
                "Reprise après reset"],
    "défense": ["Portée de détection", "Confidentialité des échanges", "Temps de réaction menace",
                "Résistance au brouillage"],
    "énergie": ["Sélectivité des protections", "Temps de coupure", "Stabilité de la tension",
                "Disponibilité du contrôle-commande"],
}

COLLECTION_NOUNS = ["rules", "components", "functions", "exchanges", "requirements", "models",
                    "elements", "archi", "baseline", "catalog"]
SPACE_PREFIXES = ["un", "proj", "prg", "lot", "ws", "atelier", "site", "ctr"]
AUTHORS = ["j.dupont", "m.lefèvre", "a.garnier", "c.nguyen", "é.moreau", "l.benali", "s.rousseau"]
TAGS = ["revue CDR", "sûreté", "hérité", "à vérifier", "interface", "critique", "v2", "COTS",
        "export Capella", "traçabilité"]

DESC_TEMPLATES = [
    "Élément issu de la revue de conception ; voir «{ref}» pour le détail.",
    "Hérité du modèle précédent, l'élément doit être revu avant la \"baseline\" {ref}.",
    "Défini lors de l'atelier d'architecture, d'après l'exigence «{ref}».",
    "Vérifié par l'équipe sûreté (rapport \"{ref}\"), aucune réserve.",
    "L'interface n'est pas encore figée : cf. note d'étude {ref}.",
    "Élément transverse utilisé par plusieurs sous-systèmes, voir «{ref}».",
    "Créé automatiquement par l'import Capella ; l'équipe doit compléter la fiche {ref}.",
]
