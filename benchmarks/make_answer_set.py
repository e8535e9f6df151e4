"""Builds benchmarks/data/fr_cnil_answers.json: questions and short answers written by hand over the
real CNIL FAQ (../shared/data/assistant/cnil-faq-squad.json), which is referenced by article id and
never copied. 105 answerable questions (none reuses a page title), 14 the FAQ does not answer, and
6 whose paragraph is withheld from the index. Run:
    python benchmarks/make_answer_set.py ../shared/data/assistant/cnil-faq-squad.json benchmarks/data/fr_cnil_answers.json
"""
import json
import sys

A = [  # (paragraph id, question, short reference answer, equivalent paragraph ids)
 (471, "Un syndic a-t-il le droit d'envoyer en clair par courrier les mots de passe de l'extranet ?", "Non, un mot de passe ne doit jamais être communiqué en clair", [275]),
 (193, "Les médecins qui font de la télémédecine peuvent-ils échanger des informations sur un patient ?", "Oui, sauf opposition de votre part", []),
 (260, "Un hôtel est-il autorisé à photocopier ma carte d'identité ?", "Non", []),
 (498, "Les associations doivent-elles appliquer le RGPD ?", "Oui, les associations doivent respecter le Règlement européen", []),
 (331, "Le numéro de sécurité sociale peut-il figurer dans une liste d'initiés ?", "Non, la collecte du NIR serait non pertinente et excessive", []),
 (286, "Pendant combien de temps un employeur peut-il garder les données de suivi du temps de travail après le départ d'un salarié ?", "5 ans après le départ des employés", []),
 (295, "Selon la CNIL, un service RH peut-il se servir du NIR en dehors de la paie ?", "Non, cette utilisation n'est pas justifiée", []),
 (375, "Faut-il déclarer à la CNIL les échanges de données de santé par messagerie sécurisée ?", "Non, ils n'ont plus à être déclarés à la CNIL", []),
 (196, "Un acte de télémédecine peut-il être pratiqué sans le consentement du patient ?", "Non, seulement avec votre consentement libre et éclairé", [383]),
 (91, "Les actes administratifs individuels sont-ils diffusés sur Legifrance ?", "Non, sauf obligation légale", []),
 (244, "La CNIL se prononce-t-elle sur l'ensemble d'un projet de charte informatique ?", "Non, seulement sur des aspects précis relatifs à la protection des données personnelles", []),
 (218, "Un employeur peut-il mettre la photo d'un salarié dans l'annuaire sans son autorisation ?", "Non, il doit avoir son autorisation", []),
 (224, "Comment signaler qu'un message de la messagerie professionnelle est personnel ?", "en indiquant \"Personnel\" ou \"Privé\" en objet", []),
 (298, "La base de données économiques et sociales contient-elle des données personnelles ?", "Non, aucune donnée à caractère personnel", []),
 (482, "Quel est le montant maximal de l'astreinte qui peut accompagner une injonction de la CNIL ?", "100 000 euros par jour de retard", []),
 (150, "Auprès de qui signaler qu'un policier a consulté le TAJ à des fins personnelles ?", "l'Inspection Générale de la Police Nationale (IGPN)", []),
 (269, "Une montre connectée est-elle permise à l'école élémentaire ?", "Non, si elle a les mêmes capacités de communication qu'un smartphone", []),
 (217, "Qui peut demander le nombre de points restant sur un permis de conduire ?", "les autorités administratives et judiciaires", []),
 (234, "Un système de géolocalisation de véhicule professionnel peut-il enregistrer la vitesse moyenne ?", "Oui, la vitesse moyenne de circulation du véhicule", []),
 (99, "Combien de temps après le départ d'un enfant une crèche doit-elle effacer ses informations selon la CNIL ?", "au plus tard trois ans après leur départ", []),
 (92, "Quelles données sur le titulaire du permis contient le téléservice Télépoints ?", "Les nom, prénom, date de naissance du titulaire et le nombre de points", []),
 (213, "Dans quel délai le médecin doit-il répondre à une demande d'accès au dossier médical récent ?", "8 jours", [421]),
 (182, "Une société doit-elle avoir mon accord avant de m'envoyer des courriels publicitaires ?", "Oui, votre accord préalable est nécessaire", []),
 (222, "Des propos publiés sur Facebook visibles des amis d'amis sont-ils considérés comme privés ?", "Non, ils étaient publics car accessibles aux \"amis d'amis\"", []),
 (149, "À qui écrire pour savoir si l'on est inscrit au FIJAISV ?", "au procureur de la République du Tribunal de grande instance", []),
 (49, "Quel motif d'inscription figure dans le fichier Préventel ?", "facture impayée ou anomalie dans le contrat d'abonnement", []),
 (262, "La CNIL possède-t-elle le contenu des fichiers qui lui sont déclarés ?", "Non, elle dispose seulement de la liste des fichiers", []),
 (127, "Peut-on refuser le prélèvement d'empreintes digitales lors d'une enquête de police ?", "Non, le refus est une infraction pénale", []),
 (191, "Les MDPH peuvent-elles enregistrer le NIR des personnes handicapées ?", "Oui, la loi le prévoit", []),
 (87, "Que doit obtenir une école avant d'utiliser les photos de ses élèves dans son journal ?", "le consentement écrit des représentants légaux des enfants", []),
 (86, "Combien de temps FICOBA conserve-t-il les données après la clôture d'un compte depuis 2014 ?", "dix ans après la clôture des comptes", []),
 (432, "Comment déclarer un fichier de gestion de l'état civil d'une commune s'il respecte la norme ?", "Par une déclaration simplifiée de conformité à la norme n°43", []),
 (173, "Faut-il justifier son opposition au démarchage publicitaire ?", "Non, sans aucune justification", []),
 (511, "Le RGPD impose-t-il d'informer les représentants du personnel de la désignation du DPO ?", "Non, mais il est recommandé d'en informer l'ensemble du personnel", []),
 (235, "Par défaut, quel caractère ont les fichiers stockés sur un ordinateur professionnel ?", "un caractère professionnel", []),
 (469, "Qui délivre désormais les certifications qui remplacent les labels de la CNIL ?", "des organismes certificateurs agréés par la CNIL ou accrédités par le COFRAC", []),
 (352, "À qui les parents adressent-ils leur demande d'accès à Base Élèves ?", "au directeur de l'école", []),
 (438, "Quelle loi a pérennisé les caméras piétons de la police municipale ?", "la loi du 3 août 2018", []),
 (12, "Les proches d'un défunt peuvent-ils faire supprimer son profil sur un réseau social ?", "Oui, en fournissant les justificatifs nécessaires", [42]),
 (124, "Une victime peut-elle demander la suppression de son inscription dans le TAJ ?", "Oui, dès que l'auteur des faits a été définitivement condamné", []),
 (11, "Comment définit-on généralement le cloud computing ?", "le fait d'utiliser des ressources informatiques à distance", []),
 (211, "Combien de temps la liste des correspondances des maladies à déclaration obligatoire est-elle conservée ?", "pendant 12 mois", []),
 (203, "Au bout de combien de temps sans ouverture le Dossier Pharmaceutique est-il clos automatiquement ?", "3 ans", []),
 (192, "Qui remet au patient un dépliant d'information sur les maladies à déclaration obligatoire ?", "l'institut de veille sanitaire (INVS)", [380]),
 (488, "Un CIL devient-il DPO automatiquement ?", "Non", []),
 (84, "Qui gère le FICP ?", "la Banque de France", []),
 (513, "Le RGPD s'applique-t-il à une entreprise hors de l'Union qui cible des résidents européens ?", "Oui", []),
 (464, "Où consulter la liste des fichiers déclarés à la CNIL avant le RGPD ?", "le \"fichier des fichiers\" sur le site de la CNIL", []),
 (478, "Que peut faire la CNIL si un organisme sanctionné continue ses mauvaises pratiques ?", "faire de nouveaux contrôles et engager une nouvelle procédure de sanction", []),
 (307, "Que doit faire l'employeur de l'adresse électronique nominative d'un employé parti ?", "la supprimer", []),
 (376, "Sous quelle forme la CNIL recommande-t-elle d'enregistrer la présence d'un handicap dans une billetterie ?", "sous forme \"oui / non\"", []),
 (110, "À quelle condition un électeur peut-il obtenir une copie de la liste électorale ?", "s'engager à ne pas en faire un usage commercial", []),
 (189, "Qui tranche un conflit avec un hôpital sur l'effacement de données de santé ?", "les tribunaux", []),
 (148, "Les magistrats du parquet peuvent-ils consulter le TAJ ?", "Oui", []),
 (476, "À qui revient l'argent des amendes prononcées par la CNIL ?", "au budget général de l'État", []),
 (431, "Dans quel cadre les communes peuvent-elles utiliser le NIR ?", "Dans le cadre des missions d'aide sociale prévues par la loi", []),
 (337, "Jusqu'à quel montant d'amende la CNIL peut-elle sanctionner une prospection postale illégale ?", "300.000 Euros", []),
 (104, "Dans quel cas un électeur peut-il être radié de la liste électorale ?", "s'il ne remplit plus les conditions pour y figurer", []),
 (263, "Que faire si le responsable du fichier ne répond pas à une demande de rectification dans le délai d'un mois ?", "adresser une plainte à la CNIL", []),
 (323, "Un assureur peut-il installer un boîtier \"Pay as you drive\" sans l'accord du conducteur ?", "Non, pas sans le consentement préalable du conducteur", []),
 (322, "Quelle est la durée maximale de conservation des images de vidéosurveillance au travail ?", "1 mois", []),
 (209, "Sur quelle période porte l'historique des remboursements de l'Assurance Maladie ?", "les 12 derniers mois", []),
 (291, "Qui détient le dossier médical des salariés ?", "les services de la médecine du travail", []),
 (463, "Qui est en pratique le responsable de traitement ?", "la personne morale incarnée par son représentant légal", []),
 (290, "Combien de temps un dossier de candidat peut-il être conservé avec son accord ?", "2 ans après son dernier contact", [229]),
 (451, "Depuis quand la CNIL peut-elle procéder à des contrôles en ligne ?", "Depuis mars 2014", []),
 (153, "Combien de temps sont conservées les informations du fichier Schengen ?", "3 ans", []),
 (481, "Qui fixe le montant d'une amende de la CNIL ?", "la formation restreinte de la CNIL", []),
 (57, "Une compagnie d'assurance automobile peut-elle ficher les infractions routières de ses clients ?", "Non", []),
 (172, "Qu'est-ce que le spam vocal ?", "une pratique frauduleuse consistant à appeler votre téléphone mobile depuis un numéro surtaxé", []),
 (437, "À quelle norme se conformer pour déclarer le fichier des élèves des écoles maternelles ?", "la norme 33", []),
 (241, "Que peut faire un salarié dont l'employeur ne respecte pas le RGPD ?", "Adresser une réclamation à la CNIL ou saisir l'inspection du Travail", []),
 (225, "Un employeur a-t-il le droit d'écouter les appels de ses employés sans les prévenir ?", "Non, il commet un délit", []),
 (67, "Combien de temps une banque garde-t-elle les informations d'une demande de crédit refusée ?", "au maximum 6 mois", []),
 (367, "Faut-il l'accord des parents pour publier la photo d'un mineur sur internet ?", "Oui, l'accord des parents est nécessaire", []),
 (446, "Qui peut visionner les images de vidéoprotection ?", "les personnes habilitées et mentionnées dans l'autorisation préfectorale", [120]),
 (145, "À quel service écrire pour savoir si l'on figure au FAED ?", "Service central de la police technique et scientifique", []),
 (426, "Quelle norme s'applique aux fichiers de prêts de livres ?", "la norme n°9", []),
 (238, "Un employeur peut-il filmer un salarié en permanence à son poste ?", "En principe, non", []),
 (442, "Une caméra sur la voie publique peut-elle filmer les fenêtres d'un immeuble ?", "Non", [119]),
 (169, "Que faire si l'on reçoit encore des publicités postales malgré son opposition ?", "adresser une plainte à la CNIL", []),
 (13, "La CNIL peut-elle intervenir pour une commande en ligne jamais livrée ?", "Non, elle n'est pas compétente pour les litiges commerciaux", []),
 (69, "La désactivation du sans contact sur une carte bancaire est-elle payante ?", "Non, elle doit être gratuite", []),
 (82, "Les commerçants ont-ils accès au FNCI ?", "Non, ils peuvent consulter le service Vérifiance-FNCI", []),
 (2, "Quelle loi de 1988 concerne le piratage des systèmes informatisés ?", "loi du 5 janvier 1988 dite loi \"Godfrain\"", []),
 (396, "Un cabinet médical doit-il recueillir le consentement des patients au titre du RGPD ?", "Non, si ces données sont nécessaires aux diagnostics", []),
 (4, "Quel service contacter si l'on est victime d'usurpation d'identité en ligne ?", "Info-escroqueries", []),
 (368, "Quelle loi oblige un site internet à identifier son responsable et son hébergeur ?", "la loi pour la confiance dans l'économie numérique du 21 juin 2004", []),
 (131, "Les policiers qui font des prélèvements biologiques peuvent-ils consulter le FNAEG ?", "Oui, pour vérifier si une personne y figure déjà", []),
 (103, "Comment un titulaire de compte accède-t-il aux informations de FICOBA ?", "un droit d'accès indirect, par l'intermédiaire de la CNIL", []),
 (321, "Un salarié peut-il voir les images de vidéosurveillance où il apparaît ?", "Oui", []),
 (363, "Est-il légal de récupérer des données personnelles sur des forums pour les publier ailleurs ?", "Non, c'est illégal", []),
 (137, "Qui a directement accès au FAED ?", "les agents habilités des services de l'identité judiciaire de la police nationale et des unités de recherches de la gendarmerie nationale", []),
 (26, "Que faire si mon ex-conjoint refuse de retirer la photo de notre enfant publiée sur Facebook ?", "saisir les juridictions judiciaires compétentes", []),
 (272, "La copie de mes données au titre du droit d'accès est-elle payante ?", "Non, elle est gratuite", []),
 (200, "Comment envoyer la demande de copie complète du DMP ?", "en recommandé avec accusé de réception", []),
 (15, "Combien de temps au minimum les moteurs de recherche gardent-ils les recherches ?", "6 mois", []),
 (459, "La CNIL propose-t-elle des modèles de mentions d'information ?", "Oui", []),
 (88, "Une collectivité peut-elle demander la liste nominative des adhérents d'une association ?", "Non", [425]),
 (447, "Pourquoi les sociétés d'autoroute accèdent-elles au fichier d'immatriculation ?", "pour identifier les conducteurs ayant commis des contraventions", [93]),
 (139, "Le droit d'opposition s'applique-t-il au FNAEG ?", "Non", []),
 (504, "Le dirigeant d'une société peut-il être son DPO ?", "Non, il y aurait un conflit d'intérêts", []),
 (111, "Qui détient le service Ciclade ?", "la Caisse des Dépôts", []),
 (106, "Quand un véhicule neuf est-il inscrit au SIV ?", "lors de sa première mise en circulation", []),
 (25, "Dans quelle ville est situé Facebook Ireland pour les demandes d'accès par courrier ?", "Dublin", []),
]
# the sources do not hold the answer: asked over the whole FAQ, the right reply is "not found"
IMPOSSIBLE = [
 "Quel est le prix d'un abonnement Badoo ?",
 "Combien de salariés travaillent à la CNIL ?",
 "Quelle est la capitale de l'Australie ?",
 "Combien coûte la délivrance d'un passeport biométrique ?",
 "Quel est le taux de TVA applicable aux livres numériques ?",
 "Combien de jours de congés payés un salarié a-t-il par an ?",
 "Quelle est la vitesse maximale autorisée sur autoroute par temps de pluie ?",
 "Qui a gagné la Coupe du monde de football en 1998 ?",
 "Quel est l'horaire d'ouverture des bureaux de la CNIL le samedi ?",
 "Combien de satellites compte la constellation Galileo ?",
 "Quelle est la durée du mandat du président de la CNIL ?",
 "Quel est le numéro de téléphone du service client de Badoo ?",
 "Combien coûte une carte grise pour une voiture neuve ?",
 "Quel est le salaire moyen d'un délégué à la protection des données ?",
]
# the paragraph that answers is withheld from the index: the reply must be "not found"
WITHHELD = [
 (508, "Le délégué à la protection des données peut-il être extérieur à l'organisme ?", "Oui, interne ou externe"),
 (251, "Les autres copropriétaires peuvent-ils connaître le solde de mes charges ?", "Oui"),
 (407, "Comment déclarer un fichier de dépistage de la rétinopathie diabétique ?", "Par une déclaration simplifiée de conformité à l'Acte réglementaire unique n°39"),
 (43, "Qui contacter chez Twitter pour exercer ses droits RGPD ?", "le délégué à la protection des données de Twitter"),
 (215, "Un hôpital peut-il numériser et conserver la photocopie de ma carte d'identité sans justification ?", "Non, cela apparaît disproportionné"),
 (492, "Existe-t-il un guide de sensibilisation au RGPD pour les petites entreprises ?", "Oui"),
]
corpus = json.load(open(sys.argv[1]))
ctx = {a["id"]: (a["title"], a["paragraphs"][0]["context"]) for a in corpus["data"]}
answerable = []
for i, (ref, q, ans, also) in enumerate(A, 1):
    assert ref in ctx, ref
    assert q != ctx[ref][0], q
    answerable.append({"title": f"CNIL FAQ {ref}", "paragraphs": [{"ref": ref, "qas": [
        {"id": f"cnil-{i:03d}", "question": q, "answers": [{"text": ans}], "also": also}]}]})
unanswerable = []
for j, q in enumerate(IMPOSSIBLE, 1):
    unanswerable.append({"title": "hors corpus", "paragraphs": [{"ref": A[0][0], "qas": [
        {"id": f"cnil-imp-{j:02d}", "question": q, "answers": [], "is_impossible": True}]}]})
for j, (ref, q, ans) in enumerate(WITHHELD, 1):
    assert ref in ctx and ref not in {a[0] for a in A}, ref
    unanswerable.insert(2 * j, {"title": f"CNIL FAQ {ref} (withheld)", "paragraphs": [{"ref": ref, "withheld": True, "qas": [
        {"id": f"cnil-wh-{j:02d}", "question": q, "answers": [{"text": ans}]}]}]})
# one unanswerable question after every five answerable ones: a run cut short is still stratified
data = []
for k, entry in enumerate(answerable):
    data.append(entry)
    if k % 5 == 4 and unanswerable:
        data.append(unanswerable.pop(0))
data.extend(unanswerable)
print(len(A), len(IMPOSSIBLE), len(WITHHELD), file=sys.stderr)
json.dump({"version": "casemate-answers/1", "corpus": "cnil-faq-squad.json",
           "note": "Questions and short answers written by hand over the CNIL FAQ (etalab-ia/piaf-ml, MIT); the paragraphs are referenced by id, not copied: pass the FAQ with --corpus.",
           "data": data}, open(sys.argv[2], "w"), ensure_ascii=False, indent=1)
